"""Firewall rules shared by replicas: the durable rule store, with every
change announced on the bus. Each replica hears every other's changes, so its
WatchRules streams see them and its firewall recompiles the organisation's
rules at once; a slow poll of the stored rule version catches whatever the bus
missed (Redis down, no Redis but one shared database)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from ..domain.broadcast import Broadcaster
from ..domain.firewall.rules import Rule
from ..domain.ports.bus import Bus, BusMessage, EventsMissed
from ..domain.ports.stores import RuleChange, RuleChangeType, RuleStore
from .stores.codec import dataclass_from_plain, dataclass_to_plain

log = logging.getLogger(__name__)

RULES_TOPIC = "rules"


class ReplicatedRules:
    """A `RuleStore` (same methods) whose `version(org)` also counts changes
    made on other replicas."""

    def __init__(self, store: RuleStore, bus: Bus, *, poll_seconds: float = 1.0) -> None:
        self._store = store
        self._bus = bus
        self._poll_seconds = poll_seconds
        self._origin = secrets.token_hex(8)
        # The newest version heard of per organisation, from the bus or a poll.
        self._heard: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Local changes (the store announces them) and other replicas' (the bus).
        self.changes: Broadcaster[RuleChange] = store.changes

    async def start(self) -> None:
        subscription = await self._bus.subscribe(RULES_TOPIC)
        self._tasks = [
            asyncio.create_task(self._listen(subscription), name="rules-bus"),
            asyncio.create_task(self._poll(), name="rules-poll"),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def version(self, organisation: str) -> int:
        heard = self._heard.get(organisation)
        if heard is None:
            self._heard[organisation] = 0  # now polled
            heard = 0
        return max(self._store.version(organisation), heard)

    async def rules_version(self, organisation: str) -> int:
        return await self._store.rules_version(organisation)

    async def get_rule(self, organisation: str, rule_id: str) -> Rule:
        return await self._store.get_rule(organisation, rule_id)

    async def list_rules(self, organisation: str) -> list[Rule]:
        return await self._store.list_rules(organisation)

    async def create_rule(self, rule: Rule) -> Rule:
        created = await self._store.create_rule(rule)
        await self._announce(RuleChangeType.CREATED, created)
        return created

    async def update_rule(self, rule: Rule) -> Rule:
        updated = await self._store.update_rule(rule)
        await self._announce(RuleChangeType.UPDATED, updated)
        return updated

    async def delete_rule(self, organisation: str, rule_id: str) -> Rule:
        deleted = await self._store.delete_rule(organisation, rule_id)
        await self._announce(RuleChangeType.DELETED, deleted)
        return deleted

    async def _announce(self, change_type: str, rule: Rule) -> None:
        payload = {
            "origin": self._origin,
            "type": change_type,
            "version": self._store.version(rule.organisation),
            "rule": dataclass_to_plain(rule),
        }
        await self._bus.publish(RULES_TOPIC, payload)

    def _heard_of(self, organisation: str, version: int) -> None:
        if version > self._heard.get(organisation, 0):
            self._heard[organisation] = version

    async def _listen(self, subscription: Any) -> None:
        async for event in subscription:
            if isinstance(event, EventsMissed):
                # Other replicas' changes may be lost: re-read the versions,
                # and end the watchers so they take a fresh snapshot.
                self.changes.fail_all()
                await self._refresh()
            elif isinstance(event, BusMessage):
                try:
                    payload = event.json()
                    if payload["origin"] == self._origin:
                        continue  # the store announced it here already
                    rule = dataclass_from_plain(Rule, payload["rule"])
                    self._heard_of(rule.organisation, int(payload["version"]))
                    self.changes.publish(RuleChange(str(payload["type"]), rule))
                except (KeyError, TypeError, ValueError):
                    log.warning("ignored a malformed rule change on the bus")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            await self._refresh()

    async def _refresh(self) -> None:
        for organisation in list(self._heard):
            try:
                self._heard_of(organisation, await self._store.rules_version(organisation))
            except Exception as error:  # the database is down: keep the rules we have
                log.debug("could not read the rule version (%s)", type(error).__name__)
                return
