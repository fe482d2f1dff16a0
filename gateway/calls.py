"""Upstream calls as the apps make them: built with the server's defaults, counted in the statistics
and the access line, and streams relayed with the upstream connection always closed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings

import upstream
from core import lifetime, metrics, telemetry
from core.errors import ServiceError
from gateway import guards
from stores import get_store
from stores.base import CallRecord

logger = logging.getLogger(__name__)

# Failures after which the provider may have generated (and billed) the answer: what the call's budgets
# hold stays charged. After any other, the upstream refused the call or was never reached.
MAY_BE_BILLED = frozenset({"upstream_timeout", "upstream_invalid_response"})


def call_record(
    model: str, *, usage: dict[str, int] | None = None, error: str | None = None, refused: bool = False
) -> CallRecord:
    """One upstream call as the statistics and the token budgets count it (noted in the access line):
    its usage settles what its budgets hold (guards.Reservation); `refused`, the upstream refused it
    (nothing spent), gives that back."""
    usage = usage or {}
    telemetry.note(model=model, tokens=usage.get("total_tokens", 0), **({"error": error} if error else {}))
    return CallRecord(
        model,
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        error=error,
        charges=guards.charges(usage.get("total_tokens", 0), refund=refused),
    )


async def record(
    model: str, *, usage: dict[str, int] | None = None, error: str | None = None, refused: bool = False
) -> None:
    """Count one upstream call (its tokens, or its error's kind) in the statistics, the token budgets
    and the access line: one store write."""
    await get_store().commit(call=call_record(model, usage=usage, error=error, refused=refused))


def upstream_call(
    messages: list[dict[str, Any]],
    *,
    model: str,
    max_tokens: int,
    temperature: float | None,
    api_key: str,
    extra: dict[str, Any] | None = None,
) -> upstream.UpstreamCall:
    return upstream.UpstreamCall(
        messages=messages,
        model=model,
        max_tokens=max_tokens,
        temperature=settings.LLM_TEMPERATURE if temperature is None else temperature,
        api_key=api_key,
        extra=extra or {},
    )


def verbatim_call(body: dict[str, Any], *, model: str, api_key: str) -> upstream.UpstreamCall:
    """A client's own chat completion request, forwarded as it came (only `model` filled in)."""
    return upstream.UpstreamCall(
        messages=body["messages"],
        model=model,
        max_tokens=None,
        temperature=None,
        api_key=api_key,
        extra=body,
        verbatim=True,
    )


async def complete_and_record(call: upstream.UpstreamCall) -> tuple[upstream.Completion, dict[str, int]]:
    """A non-streaming upstream call, counted."""
    completion, usage = await complete(call)
    await record(completion.model, usage=usage)
    return completion, usage


async def complete(call: upstream.UpstreamCall) -> tuple[upstream.Completion, dict[str, int]]:
    """A non-streaming upstream call; a failure is counted, a success is the caller's to count (with
    call_record, in the write that stores its result)."""
    await guards.hold_for(call)
    try:
        completion = await upstream.complete(call)
    except ServiceError as exc:
        await record(call.model, error=exc.code, refused=exc.code not in MAY_BE_BILLED)
        raise
    except asyncio.CancelledError:  # the client left: the provider still answers, and bills it
        await record(call.model, error="client_disconnected")
        raise
    return completion, full_usage(completion.usage)


async def open_and_record(call: upstream.UpstreamCall) -> upstream.UpstreamStream:
    """Open a streaming upstream call; a failure to open is counted. A stream nobody ever relays (its
    client gone before the answer's first byte) is closed and counted when the request ends."""
    await guards.hold_for(call)
    try:
        stream = await upstream.open_stream(call)
    except ServiceError as exc:
        await record(call.model, error=exc.code, refused=exc.code not in MAY_BE_BILLED)
        raise

    async def close_unrelayed() -> None:
        if stream.relayed:  # its Relay counts it and closes it, whatever happened
            if not stream.closed:  # (its frames finished in another task: closed there)
                await stream.aclose()
            return
        await stream.aclose()
        await record(stream.model, error="client_disconnected")
        logger.info("client left before the stream's first byte; upstream request closed")

    lifetime.close_at_end(close_unrelayed)
    return stream


def relaying(stream: upstream.UpstreamStream, *, counted: bool = True) -> Relay:
    """`async with calls.relaying(stream): async for chunk in stream.chunks(): ...` (see Relay)."""
    return Relay(stream, counted=counted)


class Relay:
    """While an open stream's chunks are read (`async for chunk in stream.chunks()` inside it): a failed
    call is counted when it fails, a finished one when it ends (unless not `counted`: the caller then
    counts it with call_record, in the write that stores its result), and the upstream connection is
    closed whatever happens: at once if our client goes away, so nobody pays for unread tokens. A
    context, not a generator around the chunks: one async generator less for every chunk."""

    __slots__ = ("counted", "stream")

    def __init__(self, stream: upstream.UpstreamStream, *, counted: bool = True) -> None:
        self.stream = stream
        self.counted = counted

    async def __aenter__(self) -> upstream.UpstreamStream:
        metrics.STREAMS_IN_FLIGHT.inc()
        self.stream.relayed = True
        return self.stream

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        stream = self.stream
        try:
            if isinstance(exc, ServiceError):
                await record(stream.model, error=exc.code)
            elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
                await record(stream.model, error="client_disconnected")
                logger.info(
                    "client disconnected mid-stream; upstream request closed, nothing stored conversation=%s",
                    telemetry.current().get("conversation_id", "-"),
                )
                telemetry.note(disconnected=True)
        finally:
            metrics.STREAMS_IN_FLIGHT.dec()
            await stream.aclose()
        if exc is None and self.counted:
            await record(stream.model, usage=full_usage(stream.usage))


def full_usage(usage: dict[str, int]) -> dict[str, int]:
    merged = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, **usage}
    if not usage.get("total_tokens"):
        merged["total_tokens"] = merged["prompt_tokens"] + merged["completion_tokens"]
    return merged
