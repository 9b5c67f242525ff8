"""One upstream call through an official SDK's raw `post`, for every provider.

Both SDKs (generated from the same toolkit) offer `client.post(path,
cast_to=httpx2.Response, body=..., stream=True)`: the SDK builds, authenticates
and sends the request and raises its typed errors, but skips its typed-parameter
transform and its per-event pydantic models, and hands back the unread HTTP
response. Those steps cost more per call than the rest of the gateway. The
provider parses the body; this module makes the call and maps every failure to
the same domain errors. Closing the response (also by cancellation) closes the
HTTP stream, so a client that goes away stops the upstream call."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import httpx2

from ..domain.chat import Deployment, ProviderEvent
from ..domain.errors import DomainError
from . import upstream_errors

log = logging.getLogger(__name__)

StreamParser = Callable[[httpx2.Response], AsyncIterator[ProviderEvent]]
AnswerParser = Callable[[Any], list[ProviderEvent]]


async def raw_call(
    sdk: ModuleType,
    client: Any,
    path: str,
    body: dict[str, Any],
    deployment: Deployment,
    *,
    incremental: bool,
    parse_stream: StreamParser,
    parse_answer: AnswerParser,
) -> AsyncIterator[ProviderEvent]:
    """The answer's events: parsed from the SSE body when `incremental`, else
    from one JSON answer. `sdk` is the SDK module, for its exception classes."""
    try:
        response = await client.post(path, cast_to=httpx2.Response, body=body, stream=True, stream_cls=None)
        try:
            if incremental:
                async for event in parse_stream(response):
                    yield event
            else:
                for event in parse_answer(json.loads(await response.aread())):
                    yield event
        finally:
            await response.aclose()
    except DomainError:
        raise
    except sdk.APIStatusError as error:
        raise upstream_errors.status_error(error.status_code, error.response.headers) from error
    except sdk.APITimeoutError as error:
        raise upstream_errors.timeout_error() from error
    except sdk.APIConnectionError as error:
        raise upstream_errors.connection_error() from error
    except sdk.APIError as error:
        raise upstream_errors.malformed_error() from error
    except httpx2.TimeoutException as error:
        # Body reads are not wrapped by the SDK: a stall mid-answer surfaces
        # as the transport's read timeout.
        raise upstream_errors.timeout_error() from error
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        # A chunk that is not JSON or has the wrong shape: the upstream's
        # fault, never a reason to crash the stream handler.
        log.warning("malformed answer from %s: %s", deployment.name, type(error).__name__)
        raise upstream_errors.malformed_error() from error
    except Exception as error:
        # Raw body reads surface the transport's own errors unwrapped
        # (connection reset, truncated body); all are upstream failures.
        log.warning("upstream %s failed mid-answer: %s", deployment.name, type(error).__name__)
        raise upstream_errors.connection_lost_error() from error
