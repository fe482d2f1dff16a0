"""The one module that talks to the upstream LLM API (OpenRouter or any OpenAI-compatible server).

It owns the process's single httpx client (aiohttp transport) and turns every way a call can fail
into an UpstreamError with the status this service answers with.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

import aiohttp
import httpx
import orjson
from django.conf import settings
from httpx_aiohttp import AiohttpTransport

from core import metrics, telemetry
from core.errors import ServiceError
from core.jsonio import dumps_to_keep
from core.redact import redact

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_TOKEN_COUNT = 2**31
MAX_ERROR_BODY = 64 * 1024  # bytes of an upstream error body read, at most
# Each open stream holds an upstream connection for its whole length: a lower cap (it was 200) made
# the 201st simultaneous stream wait for another to end. The service's own connections bound it.
UPSTREAM_MAX_CONNECTIONS = 10_000
# How long an idle upstream connection is kept for the next call (httpx's default is 5 s): a new one
# costs a TCP (and, to OpenRouter, a TLS) handshake, which a busy minute's calls should not pay again.
UPSTREAM_KEEPALIVE_SECONDS = 60.0
USER_AGENT = f"python-httpx/{httpx.__version__}"  # what httpx's client sends (completions go without it)
MAX_SSE_LINE = 16 * 2**20  # bytes of one unfinished upstream event line held, at most
MAX_ERROR_MESSAGE = 2000  # characters of the provider's own error message passed on under /v1/
CONTEXT_LENGTH = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|prompt is too long|too many (input )?tokens", re.I
)

_client: httpx.AsyncClient | None = None  # for the model list; completions use its transport
_transport: httpx.AsyncBaseTransport | None = None
_client_loop: asyncio.AbstractEventLoop | None = None

# Every upstream wait in progress (by its timer), and the loop time by which all must end once a
# shutdown has started: see end_calls_within.
_waits: set[asyncio.Timeout] = set()
_reading: set[_StreamWatch] = set()  # every stream read in progress (see _StreamWatch)
_ending_at: float | None = None


class UpstreamError(ServiceError):
    """A failed upstream call; `permanent` says whether trying again could help."""

    status = 502
    code = "upstream_error"


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str | None = None
    id: str | None = None
    provider: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def key_required() -> bool:
    """OpenRouter needs a key; a local OpenAI-compatible server usually does not."""
    host = urlparse(settings.LLM_BASE_URL).hostname or ""
    return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def _client_for_loop() -> httpx.AsyncClient:
    global _client, _client_loop, _transport
    loop = asyncio.get_running_loop()
    if _client is None or _client_loop is not loop or _client.is_closed:
        _transport = AiohttpTransport(
            limits=httpx.Limits(
                max_connections=UPSTREAM_MAX_CONNECTIONS, keepalive_expiry=UPSTREAM_KEEPALIVE_SECONDS
            )
        )
        _client = httpx.AsyncClient(
            transport=_transport,
            timeout=httpx.Timeout(settings.LLM_TIMEOUT, connect=min(10.0, settings.LLM_TIMEOUT)),
        )
        _client_loop = loop
    return _client


def _transport_for_loop() -> httpx.AsyncBaseTransport:
    _client_for_loop()
    assert _transport is not None
    return _transport


@functools.lru_cache(maxsize=8)
def _completions_url(base: str) -> httpx.URL:
    return httpx.URL(f"{base}/chat/completions")


async def _post_completion(body: bytes, headers: dict[str, str], *, stream: bool) -> httpx.Response:
    """POST {LLM_BASE_URL}/chat/completions on the shared transport, httpx's Request and Response
    without the AsyncClient around them: a completion needs none of its base URL, cookie jar, auth,
    redirects or event hooks, which cost more than the request itself (about 0.15 ms of the worker's
    CPU a call, measured with py-spy under a thousand streams). The answer's body is the caller's to
    read (or close). A stream is asked for uncompressed, as it is read raw (aiter_raw: as it comes off
    the network, never decoded), and its reads have their own deadlines (UpstreamStream: LLM_TIMEOUT
    without data, LLM_STREAM_MAX_SECONDS in all), so no read timeout moves a timer per network read."""
    timeout = settings.LLM_TIMEOUT
    request = httpx.Request(
        "POST",
        _completions_url(settings.LLM_BASE_URL),
        content=body,
        headers={**headers, "Accept-Encoding": "identity" if stream else "gzip, deflate"},
        extensions={
            "timeout": {
                "connect": min(10.0, timeout),
                "read": None if stream else timeout,
                "write": timeout,
                "pool": timeout,
            }
        },
    )
    try:
        return await _transport_for_loop().handle_async_request(request)
    except aiohttp.ClientError as exc:
        # What httpx_aiohttp does not map (a malformed status line or header block): a failed
        # connection to the provider like any other, not an error of ours.
        raise httpx.RemoteProtocolError(type(exc).__name__) from None


async def aclose() -> None:
    global _client, _client_loop, _transport
    if _client is not None and _client_loop is asyncio.get_running_loop():
        await _client.aclose()  # and its transport
    _client, _client_loop, _transport = None, None, None


def _headers(api_key: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "HTTP-Referer": settings.LLM_HTTP_REFERER,
        "X-Title": settings.LLM_APP_TITLE,
        "X-OpenRouter-Title": settings.LLM_APP_TITLE,
    }
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request_id = telemetry.current_request_id()
    if request_id:
        headers["X-Request-ID"] = request_id
    return headers


def _retry_after(headers: httpx.Headers) -> dict[str, str]:
    value = headers.get("Retry-After", "").strip()
    return {"Retry-After": value} if value.isdigit() else {}


_STATUS_ERRORS: dict[int, tuple[int, str, str, bool]] = {
    400: (
        400,
        "upstream_bad_request",
        "The model provider rejected the request (check the model name and parameters).",
        True,
    ),
    401: (401, "upstream_unauthorized", "The model provider rejected the API key.", True),
    402: (402, "upstream_payment_required", "The model provider's account has insufficient credits.", True),
    403: (
        403,
        "upstream_forbidden",
        "The model provider refused this request (moderation or permissions).",
        True,
    ),
    408: (504, "upstream_timeout", "The model provider timed out.", False),
    429: (
        429,
        "upstream_rate_limited",
        "The model provider is rate limiting requests; try again later.",
        False,
    ),
}


def provider_error(body: bytes) -> dict[str, Any] | None:
    """The provider's own error object (message, type, code, param), secrets masked; None if it sent
    none. Read in the shapes OpenAI-compatible servers send: `{"error": {...}}` (OpenAI, OpenRouter,
    llama.cpp, vLLM), `{"error": "text"}` (Ollama), `{"object": "error", "message": ...}` (older
    vLLM). OpenRouter's numeric `code` (the HTTP status again) is no error code and is left out; the
    error of the provider behind OpenRouter (`metadata.raw`), when it sent one, is the one passed on."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, str):
        error = {"message": error}
    elif error is None and parsed.get("object") == "error":
        error = parsed
    if not isinstance(error, dict):
        return None
    fields = {
        name: redact(value)[:MAX_ERROR_MESSAGE]
        for name in ("message", "type", "code", "param")
        if isinstance(value := error.get(name), str) and value.strip()
    }
    metadata = error.get("metadata")
    raw = metadata.get("raw") if isinstance(metadata, dict) else None
    inner = provider_error(raw.encode()) if isinstance(raw, str) and raw.startswith("{") else None
    return {**fields, **(inner or {})} or None


def is_context_length(error: dict[str, Any] | None) -> bool:
    """Whether the provider refused the request for being longer than the model's context window."""
    if not error:
        return False
    return error.get("code") == "context_length_exceeded" or any(
        CONTEXT_LENGTH.search(error.get(name, "")) for name in ("message", "type")
    )


CONTEXT_LENGTH_MESSAGE = (
    "The conversation is longer than the model's context window: start a new conversation or send a "
    "shorter message (the operator can set CHAT_CONTEXT_TOKENS so the oldest turns are left out)."
)


def _status_error(status: int, body: bytes, headers: httpx.Headers) -> UpstreamError:
    provider = provider_error(body) if 400 <= status < 500 else None
    logger.warning("upstream answered HTTP %s %s", status, (provider or {}).get("code", ""))
    if status == 400 and is_context_length(provider):
        provider = {**(provider or {}), "code": "context_length_exceeded"}
        return UpstreamError(
            CONTEXT_LENGTH_MESSAGE, status=400, code="context_length_exceeded", provider_error=provider
        )
    if status in _STATUS_ERRORS:
        ours, code, message, permanent = _STATUS_ERRORS[status]
        return UpstreamError(
            message,
            status=ours,
            code=code,
            headers=_retry_after(headers) if ours == 429 else {},
            permanent=permanent,
            # a timeout stays ours (504); every other 4xx is the provider's to explain under /v1/
            provider_error=provider if ours < 500 else None,
        )
    if status < 500:  # 404, 409, 413, 422...: the request's fault, whatever the provider's wording
        return UpstreamError(
            f"The model provider refused the request (HTTP {status}).",
            status=status,
            code="upstream_refused",
            provider_error=provider,
        )
    transient = status in (502, 503)
    return UpstreamError(
        f"The model provider failed (HTTP {status}).",
        status=502,
        code="upstream_error",
        headers=_retry_after(headers) if status == 503 else {},
        permanent=not transient,
    )


class _Deadline:
    """`async with _Deadline(when):` an upstream wait that ends by `when` (loop time) with TimeoutError,
    or sooner when a shutdown's grace ends first."""

    __slots__ = ("_timeout",)

    def __init__(self, when: float) -> None:
        self._timeout = asyncio.timeout_at(when if _ending_at is None else min(when, _ending_at))

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()
        _waits.add(self._timeout)

    async def __aexit__(self, *exc_info: Any) -> None:
        _waits.discard(self._timeout)
        await self._timeout.__aexit__(*exc_info)  # turns its own cancellation into TimeoutError


def _within(seconds: float) -> _Deadline:
    return _Deadline(asyncio.get_running_loop().time() + seconds)


def end_calls_within(seconds: float) -> None:
    """A shutdown started: every upstream call ends within `seconds`, open streams with an error frame
    (`shutting_down`), and no new one is retried. Called once per connection: the first call counts."""
    global _ending_at
    deadline = asyncio.get_running_loop().time() + seconds
    if _ending_at is not None and _ending_at <= deadline:
        return
    _ending_at = deadline
    if _waits or _reading:
        logger.info(
            "shutting down: %d upstream call(s) may run %ss more", len(_waits) + len(_reading), seconds
        )
    for watch in list(_reading):
        watch.arm(deadline)
    for timeout in _waits:
        when = timeout.when()
        if when is None or when > deadline:
            timeout.reschedule(deadline)


def _shutting_down() -> bool:
    return _ending_at is not None and asyncio.get_running_loop().time() >= _ending_at - 0.01


def _shutdown_error() -> UpstreamError:
    logger.warning("upstream call ended: the service is shutting down")
    return UpstreamError(
        "The service is restarting; try again in a moment.", status=503, code="shutting_down", permanent=True
    )


async def _read_error(response: httpx.Response) -> bytes:
    """The start of an unsuccessful streamed answer's body (enough for its error object), then closed."""
    body = b""
    try:
        async with _within(settings.LLM_TIMEOUT):  # stream requests have no read timeout of httpx's
            async for part in response.aiter_bytes():
                body += part
                if len(body) >= MAX_ERROR_BODY:
                    break
    except (httpx.HTTPError, TimeoutError):
        pass
    finally:
        await response.aclose()
    return body[:MAX_ERROR_BODY]


def _transport_error(exc: httpx.HTTPError | TimeoutError) -> UpstreamError:
    # The aiohttp transport reports a dropped connection as ConnectTimeout: only a real timer
    # firing (a TimeoutError underneath) is a timeout.
    cause = exc.__cause__
    timed_out = isinstance(exc, TimeoutError) or (
        isinstance(exc, httpx.TimeoutException) and (cause is None or isinstance(cause, TimeoutError))
    )
    if timed_out and _shutting_down():
        return _shutdown_error()
    if timed_out:
        logger.warning("upstream timed out after %ss", settings.LLM_TIMEOUT)
        return UpstreamError(
            f"The model provider did not answer within {settings.LLM_TIMEOUT:g} seconds.",
            status=504,
            code="upstream_timeout",
            permanent=True,
        )
    logger.warning("upstream connection failed: %s", type(exc).__name__)
    return UpstreamError(
        "Could not reach the model provider, or it closed the connection.",
        status=502,
        code="upstream_unreachable",
        permanent=False,
    )


def _invalid(reason: str) -> UpstreamError:
    logger.warning("upstream reply unusable: %s", reason)
    return UpstreamError(
        "The model provider sent a reply this service cannot use.",
        status=502,
        code="upstream_invalid_response",
        permanent=True,
    )


def _parse_json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise _invalid("body is not JSON") from None
    if not isinstance(body, dict):
        raise _invalid("body is not a JSON object")
    return body


def token_counts(raw: Any) -> dict[str, int]:
    """The token counts of an upstream `usage` object (its other fields, such as cost, are left out)."""
    if not isinstance(raw, dict):
        return {}
    # Only plausible counts: a huge or negative number from a faulty upstream must not poison the
    # stored totals and statistics (nor make them impossible to write as JSON).
    return {
        k: int(raw[k])
        for k in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(raw.get(k), (int, float)) and 0 <= raw[k] < MAX_TOKEN_COUNT
    }


def parse_completion(body: dict[str, Any], requested_model: str) -> Completion:
    """A 200 body into a Completion; a 200 that carries an error or no choices is a failure."""
    choices = body.get("choices")
    first: dict[str, Any] = (
        choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    )
    if body.get("error") or first.get("finish_reason") == "error":
        logger.warning("upstream reply carried an error object")
        raise UpstreamError(
            "The model provider reported an error instead of a reply.",
            status=502,
            code="upstream_error",
            permanent=True,
        )
    if not first:
        raise _invalid("no choices")
    message: dict[str, Any] = first["message"] if isinstance(first.get("message"), dict) else {}
    content = message.get("content")
    if not isinstance(content, str):
        content = "" if content is None else str(content)
    usage = token_counts(body.get("usage"))
    answered = body.get("model")
    model = answered if isinstance(answered, str) and answered else requested_model
    return Completion(
        content=content,
        model=model,
        usage=usage,
        finish_reason=first.get("finish_reason"),
        id=body.get("id") if isinstance(body.get("id"), str) else None,
        provider=body.get("provider") if isinstance(body.get("provider"), str) else None,
        raw=body,
    )


@dataclass(frozen=True)
class UpstreamCall:
    """One chat completion request, as sent upstream (the model may change to a fallback).

    `max_tokens` and `temperature` are sent when set. A `verbatim` call forwards a client's own body
    (in `extra`) as it came: nothing is added but the model, and `stream` only when streaming.
    """

    messages: list[dict[str, Any]]
    model: str
    max_tokens: int | None
    temperature: float | None
    api_key: str
    extra: dict[str, Any] = field(default_factory=dict)
    verbatim: bool = False

    def payload(self, model: str, *, stream: bool) -> bytes:
        body: dict[str, Any] = dict(self.extra)
        body["model"] = model
        body["messages"] = self.messages
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if stream or not self.verbatim:
            body["stream"] = stream
        if stream and not self.verbatim:  # most upstreams report a stream's usage only when asked
            body.setdefault("stream_options", {"include_usage": True})
        return dumps_to_keep(body)  # held while the call lasts


def _wait_before_retry(exc: UpstreamError, attempt: int) -> float | None:
    """Seconds to wait before trying again, or None when the upstream asks for longer than we may wait."""
    limit = settings.LLM_RETRY_MAX_WAIT
    asked = exc.headers.get("Retry-After")
    if asked is not None:
        return float(asked) if float(asked) <= limit else None
    return min(limit, 0.25 * 2**attempt) * random.uniform(0.5, 1.5)


async def _measured(call: Callable[[str], Awaitable[T]], model: str) -> T:
    """One attempt, timed and counted in the metrics and the request's access line."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await call(model)
    except UpstreamError as exc:
        outcome = "error"
        metrics.UPSTREAM_ERRORS.labels(exc.code).inc()
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics.UPSTREAM_SECONDS.labels(outcome).observe(elapsed)
        telemetry.add_to("upstream_ms", round(elapsed * 1000, 2))


async def with_retries(call: Callable[[str], Awaitable[T]], model: str) -> T:
    """Try `call(model)`, retrying transient failures with backoff, then each fallback model in turn."""
    candidates = [model, *[m for m in settings.LLM_FALLBACK_MODELS if m != model]]
    failure: UpstreamError | None = None
    for candidate in candidates:
        for attempt in range(settings.LLM_MAX_RETRIES + 1):
            try:
                return await _measured(call, candidate)
            except UpstreamError as exc:
                if exc.permanent:
                    raise
                failure = exc
                last = attempt == settings.LLM_MAX_RETRIES or _ending_at is not None
                wait = None if last else _wait_before_retry(exc, attempt)
                if wait is None:
                    break
                logger.info("upstream %s for %s; retry %d in %.2fs", exc.code, candidate, attempt + 1, wait)
                metrics.UPSTREAM_RETRIES.inc()
                telemetry.add_to("retries")
                await asyncio.sleep(wait)
        if candidate != candidates[-1]:
            logger.warning(
                "model %s failed (%s); trying the next fallback model",
                candidate,
                failure.code if failure else "",
            )
    assert failure is not None
    raise failure


async def complete(call: UpstreamCall) -> Completion:
    """One non-streaming chat completion, with retries and fallback models."""

    async def once(candidate: str) -> Completion:
        try:
            async with _within(settings.LLM_TIMEOUT):
                response = await _post_completion(
                    call.payload(candidate, stream=False), _headers(call.api_key), stream=False
                )
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as exc:
            raise _transport_error(exc) from None
        if response.status_code != 200:
            raise _status_error(response.status_code, response.content[:MAX_ERROR_BODY], response.headers)
        return parse_completion(_parse_json(response), candidate)

    return await with_retries(once, call.model)


def _stream_failed(code: str, message: str) -> UpstreamError:
    logger.warning("upstream stream failed: %s", code)
    return UpstreamError(message, status=502, code=code, permanent=False)


class _StreamWatch:
    """The deadline of a stream's reads, by one timer per stream that is moved only when it fires
    (an asyncio.timeout per read costs a timer and a context per chunk). When a read is still waiting
    at the deadline (or when a shutdown's grace ends), the reading task is cancelled and the read
    raises TimeoutError, as asyncio.timeout would."""

    __slots__ = ("_fired", "_handle", "_loop", "_task", "deadline")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[Any] | None = None  # the task waiting for a read, if any
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False
        self.deadline = 0.0

    def arm(self, when: float) -> None:
        """The timer fires by `when` (it may fire earlier, and is then moved on)."""
        if self._handle is None or self._handle.when() > when:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        self._handle = None
        deadline = self.deadline if _ending_at is None else min(self.deadline, _ending_at)
        if self._task is None:
            return  # not reading: the next read checks its deadline before it waits
        if self._loop.time() < deadline:
            self.arm(deadline)
        else:
            self._fired = True
            self._task.cancel()

    async def read(self, source: AsyncIterator[bytes], deadline: float) -> bytes:
        """The next piece of `source`, by `deadline` (loop time) or by a shutdown's end."""
        self.deadline = deadline
        if _ending_at is not None:
            deadline = min(deadline, _ending_at)
        if self._loop.time() >= deadline:
            raise TimeoutError
        self.arm(deadline)
        task = self._task = asyncio.current_task()
        _reading.add(self)
        try:
            return await anext(source)
        except asyncio.CancelledError:
            # Ours only if nobody else cancelled the task too (a client gone): as asyncio.timeout.
            # A cancellation always lands where the task waits, so it cannot outlive this read.
            if self._fired and task is not None and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self._task, self._fired = None, False
            _reading.discard(self)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class UpstreamStream:
    """An upstream stream whose status was 200: iterate `chunks()`, then read model and usage.

    It ends with `upstream_timeout` when no data event came for LLM_TIMEOUT seconds (comment lines are
    keep-alives, not progress) or when it has run LLM_STREAM_MAX_SECONDS, and with `shutting_down`
    when a shutdown's grace is over."""

    def __init__(self, response: httpx.Response, requested_model: str) -> None:
        self._response = response
        self.model = requested_model
        self.usage: dict[str, int] = {}
        self.finish_reason: str | None = None
        self.raw = b""  # the JSON of the chunk chunks() yielded last, as the upstream sent it
        self.relayed = False  # set by whoever relays it (gateway.calls.Relay)
        now = asyncio.get_running_loop().time()
        self._ends_at = now + settings.LLM_STREAM_MAX_SECONDS
        self._idle_until = now + settings.LLM_TIMEOUT

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """Each chunk as the upstream sent it; error events, cut and overdue streams raise.

        The body is read by the network chunk (one deadline per read, not per line) and split into
        lines here, in the one generator every chunk passes through; CR LF and lone CR end lines too,
        as in the SSE specification."""
        loop = asyncio.get_running_loop()
        idle = settings.LLM_TIMEOUT  # read once a stream, not once a line
        raw = self._response.aiter_raw()
        watch = _StreamWatch()
        pending = b""
        ended = False
        try:
            while not ended:
                try:
                    data = await watch.read(raw, min(self._idle_until, self._ends_at))
                except StopAsyncIteration:
                    if not pending:
                        break
                    data, ended = b"\n", True  # a last line without its line end
                except TimeoutError:
                    raise self._overdue() from None
                pending = pending + data if pending else data
                if b"\r" in pending:  # a CR LF split between reads makes one more blank line: harmless
                    pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                lines = pending.split(b"\n")
                pending = lines.pop()
                if len(pending) > MAX_SSE_LINE:
                    raise _stream_failed(
                        "upstream_invalid_response",
                        "The model provider sent a reply this service cannot use.",
                    )
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # ": OPENROUTER PROCESSING" keep-alives, event names, blank lines
                    self._idle_until = loop.time() + idle
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    chunk = self._parse(data)
                    if chunk is not None:
                        self.raw = data
                        yield chunk
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        finally:
            watch.close()
        if self.finish_reason is None:
            raise _stream_failed(
                "upstream_stream_cut", "The model provider's reply was cut off before it finished."
            )

    def _parse(self, data: bytes) -> dict[str, Any] | None:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _stream_failed(
                "upstream_invalid_response",
                "The model provider sent a reply this service cannot use.",
            ) from None
        if not isinstance(chunk, dict):
            return None
        if chunk.get("error"):
            raise _stream_failed("upstream_error", "The model provider reported an error mid-reply.")
        self._note(chunk)
        return chunk

    def _overdue(self) -> UpstreamError:
        if _shutting_down():
            return _shutdown_error()
        if asyncio.get_running_loop().time() >= self._ends_at - 0.01:
            logger.warning(
                "upstream stream ended after LLM_STREAM_MAX_SECONDS=%s", settings.LLM_STREAM_MAX_SECONDS
            )
            message = f"The reply took longer than {settings.LLM_STREAM_MAX_SECONDS:g} seconds."
        else:
            logger.warning("upstream stream sent no data for LLM_TIMEOUT=%s", settings.LLM_TIMEOUT)
            message = f"The model provider sent nothing for {settings.LLM_TIMEOUT:g} seconds."
        return UpstreamError(message, status=504, code="upstream_timeout", permanent=True)

    def _note(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = token_counts(usage)
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                if choice["finish_reason"] == "error":
                    raise _stream_failed("upstream_error", "The model provider reported an error mid-reply.")
                self.finish_reason = choice["finish_reason"]

    @property
    def closed(self) -> bool:
        return self._response.is_closed

    async def aclose(self) -> None:
        """Close the upstream connection (at once, if the reply is unfinished)."""
        await self._response.aclose()


def delta_text(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices")
    choice: dict[str, Any] = (
        choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    )
    delta: dict[str, Any] = choice["delta"] if isinstance(choice.get("delta"), dict) else {}
    content = delta.get("content")
    return content if isinstance(content, str) else ""


def _is_event_stream(response: httpx.Response) -> bool:
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return media_type == "text/event-stream"


async def _not_a_stream(response: httpx.Response) -> UpstreamError:
    """A 200 to a stream request that is no event stream (a proxy's HTML page, a JSON error object):
    a failure, answered before our stream starts."""
    body = await _read_error(response)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("error"):
        logger.warning("upstream answered a stream request with an error object")
        return UpstreamError(
            "The model provider reported an error instead of a reply.",
            status=502,
            code="upstream_error",
            permanent=True,
        )
    return _invalid("a stream request was answered with no event stream")


async def open_stream(call: UpstreamCall) -> UpstreamStream:
    """Start a streaming completion; returns once the upstream answered 200, else raises.

    Retries and fallbacks happen here, before our client has been sent a single byte; never later.
    """

    async def once(candidate: str) -> UpstreamStream:
        try:
            async with _within(settings.LLM_TIMEOUT):
                response = await _post_completion(
                    call.payload(candidate, stream=True), _headers(call.api_key), stream=True
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise _transport_error(exc) from None
        if response.status_code != 200:
            body = await _read_error(response)
            raise _status_error(response.status_code, body, response.headers)
        if not _is_event_stream(response):
            raise await _not_a_stream(response)
        return UpstreamStream(response, candidate)

    return await with_retries(once, call.model)


async def list_models(*, api_key: str) -> list[dict[str, Any]]:
    """The upstream's model list (GET {base}/models), as its `data` array."""
    client = _client_for_loop()
    try:
        async with _within(min(settings.LLM_TIMEOUT, 15.0)):
            response = await client.get(f"{settings.LLM_BASE_URL}/models", headers=_headers(api_key))
    except (httpx.HTTPError, TimeoutError) as exc:
        raise _transport_error(exc) from None
    if response.status_code != 200:
        raise _status_error(response.status_code, response.content[:MAX_ERROR_BODY], response.headers)
    data = _parse_json(response).get("data")
    if not isinstance(data, list):
        raise _invalid("models reply has no data list")
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
