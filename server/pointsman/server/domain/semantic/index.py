"""The in-process vector index (L1): entries by organisation and scope, found
by cosine.

A scope is a digest of everything a cached answer depends on except the last
user turn (the conversation before it, the model, the config): only entries in
the caller's organisation and scope are compared. Within a scope, vectors are
unit rows of float32 matrices. Up to `_FLAT_ROWS` rows a lookup is one matrix
product; past that the scope is split into lists around k-means centroids (an
inverted file) and a lookup reads the `_PROBES` lists nearest the query: a
cache only wants neighbours above a high cosine, and those sit in the nearest
lists. No list grows past `_MAX_LIST` rows: a longer one is split in two
around its own 2-means centroids. Cached questions are often near-identical
(one template, other numbers), and they pile into a few lists that would
otherwise make a lookup read tens of thousands of rows. Removing an entry
zeroes its row (a zero row never passes a threshold) and the slot is reused.

A list keeps only the first `_PREFIX` dimensions of its vectors, each row made
unit length again (WordLlama is trained Matryoshka-style: a prefix of its
vector is a coarser embedding of its own). A lookup scores the probed lists'
rows by that prefix, keeps the best `_RERANK` (or four times the limit), and
scores those by their full vectors, which each entry holds: the cosines it
returns are the full vectors'. At 100,000 entries the probed rows no longer
sit in the CPU's caches, and reading a quarter of the bytes is most of what a
search costs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .matcher import Features

Vector = npt.NDArray[np.float32]

_FLAT_ROWS = 2048  # a scope this small is searched whole
_PROBES = 6  # lists read per lookup once a scope is split
_RETRAIN_FACTOR = 8  # the centroids are worked out again when a scope grows this much
_SAMPLE = 8192  # vectors k-means learns from
_MAX_LIST = 256  # rows in one list at most (a longer one is split in two)
_PREFIX = 64  # dimensions a list keeps of each vector, for the first pass
_RERANK = 32  # rows the first pass hands to the full vectors, at least


@dataclass(slots=True)
class Entry:
    """One cached question and its answer. `answer` is whatever the cache
    stores (the orchestrator's CachedAnswer); `size` its bytes, roughly."""

    id: str
    organisation: str
    scope: str
    question: str
    features: Features
    vector: Vector
    answer: Any
    expires_at: float
    size: int
    slot: tuple[int, int] = (-1, -1)  # (list, row) inside its scope


@dataclass(slots=True)
class _List:
    vectors: Vector = field(default_factory=lambda: np.zeros((16, 0), np.float32))  # unit prefixes
    entries: list[Entry | None] = field(default_factory=list)
    free: list[int] = field(default_factory=list)


class _Scope:
    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.lists = [_new_list(dimensions)]
        self.centroids: Vector | None = None
        self.size = 0
        self.trained_at = 0

    def add(self, entry: Entry) -> None:
        if self.size + 1 > max(_FLAT_ROWS, self.trained_at * _RETRAIN_FACTOR) and self.size >= _FLAT_ROWS:
            self._split()
        number = 0 if self.centroids is None else int(np.argmax(self.centroids @ entry.vector))
        _put(self.lists[number], number, entry)
        self.size += 1
        target = self.lists[number]
        if self.centroids is not None and len(target.entries) - len(target.free) > _MAX_LIST:
            self._split_list(number)

    def _split_list(self, number: int) -> None:
        """Splits one long list in two around 2-means centroids of its rows;
        the second half becomes a new list with its own centroid."""
        assert self.centroids is not None
        members = [e for e in self.lists[number].entries if e is not None]
        matrix = np.stack([e.vector for e in members])
        # Seeds: one row and the row least like it, then a few rounds of 2-means.
        first = matrix[0]
        second = matrix[int(np.argmin(matrix @ first))]
        pair = np.stack([first, second])
        for _ in range(4):
            side = np.argmax(matrix @ pair.T, axis=1)
            for half in (0, 1):
                chosen = matrix[side == half]
                if len(chosen):
                    mean = chosen.sum(axis=0)
                    norm = np.linalg.norm(mean)
                    if norm > 0:
                        pair[half] = mean / norm
        side = np.argmax(matrix @ pair.T, axis=1)
        if side.all() or not side.any():
            # Identical rows: any halving keeps lists short; both centroids are alike,
            # so a query near one probes the other too.
            side = np.arange(len(members)) % 2
        extra = len(self.lists)
        self.lists[number] = _new_list(self.dimensions)
        self.lists.append(_new_list(self.dimensions))
        self.centroids = np.vstack([self.centroids, pair[1:]]).astype(np.float32)
        self.centroids[number] = pair[0]
        for entry, half in zip(members, side, strict=True):
            _put(self.lists[extra if half else number], extra if half else number, entry)

    def remove(self, entry: Entry) -> None:
        number, row = entry.slot
        target = self.lists[number]
        target.vectors[row] = 0.0
        target.entries[row] = None
        target.free.append(row)
        self.size -= 1

    def search(self, query: Vector, threshold: float, limit: int) -> list[tuple[float, Entry]]:
        if self.centroids is None:
            probed = self.lists
        else:
            nearest = np.argpartition(-(self.centroids @ query), min(_PROBES, len(self.lists) - 1))[:_PROBES]
            probed = [self.lists[int(n)] for n in nearest]
        probed = [candidates for candidates in probed if candidates.entries]
        if not probed:
            return []
        # First pass on the prefixes, one score array for all probed lists.
        head = _prefix(query)
        scores = np.concatenate([c.vectors[: len(c.entries)] @ head for c in probed])
        keep = max(_RERANK, 2 * limit)
        rows = np.argpartition(-scores, keep)[:keep] if len(scores) > keep else np.arange(len(scores))
        starts = np.cumsum([0] + [len(c.entries) for c in probed])
        lists = np.searchsorted(starts, rows, side="right") - 1
        chosen: list[Entry] = []
        for row, number in zip(rows.tolist(), lists.tolist(), strict=True):
            entry = probed[number].entries[row - int(starts[number])]
            if entry is not None:
                chosen.append(entry)
        if not chosen:
            return []
        # The full vectors, for the cosines the matcher reads.
        full = np.stack([entry.vector for entry in chosen]) @ query
        found = [(float(full[n]), chosen[n]) for n in np.flatnonzero(full >= threshold).tolist()]
        found.sort(key=lambda pair: -pair[0])
        return found[:limit]

    def _split(self) -> None:
        """Learns centroids (k-means on a sample) and files every entry under
        its nearest one."""
        entries = [e for lst in self.lists for e in lst.entries if e is not None]
        matrix = np.stack([e.vector for e in entries])
        count = max(2, int(np.sqrt(len(entries))))
        rng = np.random.default_rng(len(entries))
        sample = matrix[rng.choice(len(matrix), min(len(matrix), _SAMPLE), replace=False)]
        centroids = sample[rng.choice(len(sample), count, replace=False)].copy()
        for _ in range(8):
            assigned = np.argmax(sample @ centroids.T, axis=1)
            for number in range(count):
                members = sample[assigned == number]
                if len(members):
                    mean = members.sum(axis=0)
                    norm = np.linalg.norm(mean)
                    if norm > 0:
                        centroids[number] = mean / norm
        self.centroids = centroids.astype(np.float32)
        self.lists = [_new_list(self.dimensions) for _ in range(count)]
        assigned = np.concatenate(
            [np.argmax(matrix[i : i + 8192] @ self.centroids.T, axis=1) for i in range(0, len(matrix), 8192)]
        )
        for entry, number in zip(entries, assigned, strict=True):
            _put(self.lists[int(number)], int(number), entry)
        self.trained_at = len(entries)


def _new_list(dimensions: int) -> _List:
    return _List(np.zeros((16, min(dimensions, _PREFIX)), np.float32), [], [])


def _prefix(vector: Vector) -> Vector:
    """The first `_PREFIX` dimensions, unit length again (a zero prefix stays zero)."""
    head = vector[:_PREFIX]
    norm = float(np.sqrt(head @ head))
    return (head / norm).astype(np.float32) if norm > 0 else np.zeros_like(head)


def _put(target: _List, number: int, entry: Entry) -> None:
    if target.free:
        row = target.free.pop()
        target.entries[row] = entry
    else:
        row = len(target.entries)
        if row == len(target.vectors):
            grown = np.zeros((len(target.vectors) * 2, target.vectors.shape[1]), np.float32)
            grown[:row] = target.vectors
            target.vectors = grown
        target.entries.append(entry)
    target.vectors[row] = _prefix(entry.vector)
    entry.slot = (number, row)


class VectorIndex:
    """Entries by organisation and scope, bounded: at most `max_entries`
    in all, `max_entries_per_organisation` in one (the oldest go first).
    Thread-safe (one lock; a lookup holds it for well under a millisecond)."""

    def __init__(self, dimensions: int, *, max_entries: int, max_entries_per_organisation: int) -> None:
        self.dimensions = dimensions
        self.max_entries = max_entries
        self.max_entries_per_organisation = max_entries_per_organisation
        self._scopes: dict[tuple[str, str], _Scope] = {}
        self._by_id: OrderedDict[str, Entry] = OrderedDict()  # oldest first
        self._by_organisation: dict[str, OrderedDict[str, Entry]] = {}
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def count(self, organisation: str) -> int:
        return len(self._by_organisation.get(organisation, ()))

    def add(self, entry: Entry) -> None:
        with self._lock:
            if entry.id in self._by_id:
                return
            own = self._by_organisation.setdefault(entry.organisation, OrderedDict())
            while len(own) >= self.max_entries_per_organisation:
                self._remove(next(iter(own.values())))
                self.evictions += 1
            while len(self._by_id) >= self.max_entries:
                self._remove(next(iter(self._by_id.values())))
                self.evictions += 1
            key = (entry.organisation, entry.scope)
            scope = self._scopes.get(key)
            if scope is None:
                scope = self._scopes[key] = _Scope(self.dimensions)
            scope.add(entry)
            self._by_id[entry.id] = entry
            own[entry.id] = entry

    def remove(self, entry_id: str) -> None:
        with self._lock:
            entry = self._by_id.get(entry_id)
            if entry is not None:
                self._remove(entry)

    def _remove(self, entry: Entry) -> None:
        self._by_id.pop(entry.id, None)
        own = self._by_organisation.get(entry.organisation)
        if own is not None:
            own.pop(entry.id, None)
            if not own:
                del self._by_organisation[entry.organisation]
        key = (entry.organisation, entry.scope)
        scope = self._scopes.get(key)
        if scope is not None:
            scope.remove(entry)
            if scope.size == 0:
                del self._scopes[key]

    def search(
        self, organisation: str, scope: str, query: Vector, threshold: float, now: float, limit: int = 8
    ) -> list[tuple[float, Entry]]:
        """Live entries of the organisation's scope with a cosine of at least
        `threshold`, best first; expired ones found on the way are dropped."""
        with self._lock:
            found = self._scopes.get((organisation, scope))
            if found is None:
                return []
            results = found.search(query, threshold, limit)
            live = []
            for score, entry in results:
                if entry.expires_at <= now:
                    self._remove(entry)
                else:
                    live.append((score, entry))
            return live
