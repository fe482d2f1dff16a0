"""Server-sent events: framing, and keep-alive comments while the upstream is quiet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from django.http import StreamingHttpResponse

from core.jsonio import dumps

KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"


def frame(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, bytes) else dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


async def with_keepalive(source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
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
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        if hasattr(iterator, "aclose"):
            await iterator.aclose()


def event_stream(source: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(with_keepalive(source), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
