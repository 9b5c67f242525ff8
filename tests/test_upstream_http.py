"""The providers send what the official SDKs send: the same URL and headers,
taken from the SDK client's own request builder, over a pooled connection."""

from __future__ import annotations

import anthropic
import openai

from pointsman.server.domain.chat import ChatRequest, Deployment, Message, ProviderKind, Role, TextDelta
from pointsman.server.providers.anthropic import AnthropicProvider
from pointsman.server.providers.openai_compatible import OpenAICompatibleProvider

from fakes.anthropic_upstream import FakeAnthropic
from fakes.openai_upstream import FakeOpenAI

# Headers the SDK sets per call or attempt (timeouts, its retry count), or per
# connection, which an equal request may carry differently.
PER_ATTEMPT = {
    "x-stainless-retry-count",
    "x-stainless-read-timeout",
    "x-stainless-timeout",
    "content-length",
    "host",
    "connection",
}
REQUEST = ChatRequest("x", [Message(Role.USER, "hello")])


def comparable(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in PER_ATTEMPT}


async def test_openai_requests_carry_the_sdks_headers() -> None:
    async with FakeOpenAI() as upstream:
        sdk = openai.AsyncOpenAI(api_key="sk-one", base_url=upstream.base_url, max_retries=0, organization="org-7")
        await sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hello"}])
        await sdk.close()
        from_sdk = comparable(upstream.last_headers)

        provider = OpenAICompatibleProvider(api_key="sk-one", base_url=upstream.base_url, timeout_seconds=5)
        try:
            events = [e async for e in provider.stream(Deployment("d", ProviderKind.OPENAI, "gpt-test"), REQUEST)]
        finally:
            await provider.aclose()
        from_gateway = comparable(upstream.last_headers)

    assert TextDelta("Echo: hello") in events
    assert from_gateway["authorization"] == "Bearer sk-one"
    assert from_gateway["user-agent"].startswith("AsyncOpenAI/Python")
    # Everything the SDK sends but the organisation (which this provider was not given).
    from_sdk.pop("openai-organization")
    assert from_gateway == from_sdk


async def test_anthropic_requests_carry_the_sdks_headers() -> None:
    async with FakeAnthropic() as upstream:
        sdk = anthropic.AsyncAnthropic(api_key="sk-ant-one", base_url=upstream.base_url, max_retries=0)
        await sdk.messages.create(model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hello"}])
        await sdk.close()
        from_sdk = comparable(upstream.last_headers)

        provider = AnthropicProvider(api_key="sk-ant-one", base_url=upstream.base_url, timeout_seconds=5)
        try:
            events = [e async for e in provider.stream(Deployment("d", ProviderKind.ANTHROPIC, "claude-test"), REQUEST)]
        finally:
            await provider.aclose()
        from_gateway = comparable(upstream.last_headers)

    assert any(isinstance(e, TextDelta) for e in events)
    assert from_gateway["anthropic-version"] == from_sdk["anthropic-version"]
    assert upstream.last_headers["x-stainless-timeout"] == "5"
    assert from_gateway == from_sdk


async def test_connections_are_reused_across_calls() -> None:
    async with FakeOpenAI() as upstream:
        provider = OpenAICompatibleProvider(api_key="k", base_url=upstream.base_url, timeout_seconds=5)
        deployment = Deployment("d", ProviderKind.OPENAI, "gpt-test")
        try:
            for incremental in (True, False, True, False):
                [e async for e in provider.stream(deployment, REQUEST, incremental=incremental)]
        finally:
            await provider.aclose()
        assert upstream.requests_total == 4
        assert len(upstream.client_addresses) == 1
