"""Server-sent events: framing, and keep-alive comments while the upstream is quiet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from django.http import StreamingHttpResponse

from core.jsonio import dumps

KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"


def frame(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, bytes) else dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


async def with_keepalive(source: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """Forward frames as they come; send a comment line whenever nothing came for a while."""
    iterator = aiter(source)
    pending: asyncio.Task[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield KEEPALIVE
                continue
            step, pending = pending, None
            try:
                chunk = step.result()
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        if pending is not None:
            await _let_go(pending)
        if hasattr(iterator, "aclose"):
            await iterator.aclose()


async def _let_go(step: asyncio.Task[bytes]) -> None:
    """Cancel a step of the source we no longer want, and wait for it to stop (the source cannot be
    closed while it runs). Its outcome is retrieved whatever it is: when our client goes away just as
    the source ends, the step holds a StopAsyncIteration nobody asked for, which asyncio would
    otherwise log as `Task exception was never retrieved`."""
    step.add_done_callback(_retrieve)
    if not step.done():
        step.cancel()
        await asyncio.wait({step})


def _retrieve(step: asyncio.Task[bytes]) -> None:
    if not step.cancelled():
        step.exception()


def event_stream(source: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(with_keepalive(source), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
