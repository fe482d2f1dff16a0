"""Server-sent events: framing, and keep-alive comments while the upstream is quiet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse

from core.jsonio import dumps

KEEPALIVE = b": keep-alive\n\n"

Send = Callable[[dict[str, Any]], Awaitable[None]]


def frame(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, bytes) else dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


def _body(part: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": part, "more_body": True}


def _succeeded(sending: asyncio.Future[None]) -> bool:
    return sending.done() and not sending.cancelled() and sending.exception() is None


async def pump(source: AsyncIterator[bytes], send: Send) -> None:
    """Send each frame of `source` to the client as it comes, with a keep-alive comment whenever
    nothing was sent for SSE_KEEPALIVE_SECONDS; the source is closed whatever happens.

    One task reads and sends, with ASGI's own `send` (the edge hands it to the response): per frame no
    second task to wake, no queue, and none of Django's per-part generators. A slow client holds the
    send, so nothing more is read from the upstream meanwhile (back-pressure). A single timer, moved
    only when it fires, sends a keep-alive on a task of its own while the task waits for the upstream;
    a frame waits for a keep-alive still being sent, so the two never cross."""
    loop = asyncio.get_running_loop()
    every = settings.SSE_KEEPALIVE_SECONDS
    last_sent = loop.time()
    keepalive: asyncio.Future[None] | None = None
    timer: asyncio.TimerHandle | None = None
    sending = False  # a frame is on its way (a slow client may hold it): no keep-alive is due

    def tick() -> None:
        nonlocal timer, keepalive, last_sent
        now = loop.time()
        # A keep-alive that failed is not replaced: the next frame raises its error.
        if now >= last_sent + every and not sending and (keepalive is None or _succeeded(keepalive)):
            last_sent = now
            keepalive = asyncio.ensure_future(send(_body(KEEPALIVE)))
        timer = loop.call_at(max(now, last_sent) + every, tick)

    timer = loop.call_at(last_sent + every, tick)
    try:
        async for part in source:
            if keepalive is not None:
                await keepalive  # a frame waits for a keep-alive still going out (its error is raised here)
                keepalive = None
            sending = True
            await send(_body(part))
            sending, last_sent = False, loop.time()
    finally:
        timer.cancel()
        if keepalive is not None:
            if not keepalive.done():
                keepalive.cancel()
                await asyncio.wait({keepalive})
            _succeeded(keepalive)  # its error, if any, is taken: the stream is over anyway
        if hasattr(source, "aclose"):
            await source.aclose()


class EventStream(StreamingHttpResponse):
    """A `text/event-stream` answer. Served by the edge (config/edge.py), which sets `asgi_send` once
    the head is sent, its frames go out through `pump`; anywhere else (Django's test client) they are
    iterated as any streaming response's, without keep-alives."""

    asgi_send: Send | None = None

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        super().__init__(source, content_type="text/event-stream")
        self._source = source
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        send = self.asgi_send
        # not under the edge, or a middleware replaced the frames: Django's own iteration
        if send is None or getattr(self, "_iterator", None) is not self._source:
            async for part in super().__aiter__():
                yield part
            return
        await pump(self._source, send)


def event_stream(source: AsyncIterator[bytes]) -> EventStream:
    return EventStream(source)
