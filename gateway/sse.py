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


# The most frames read ahead of a slow client before the upstream is left unread (back-pressure).
MAX_BUFFERED = 64


async def with_keepalive(source: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """Forward frames as they come; send a comment line whenever nothing was sent for a while.

    One task reads the source for the whole stream and buffers its frames; this generator sends what
    is buffered, all of it at once when several frames wait (one ASGI send, not several). A single
    timer, moved only when it fires, wakes it for a keep-alive: nothing is scheduled per frame. When
    our client goes away (this generator is cancelled or closed) the reading task is cancelled, so
    the source closes its upstream at once."""
    loop = asyncio.get_running_loop()
    frames: list[bytes] = []
    failure: list[BaseException] = []
    finished = False
    wake: asyncio.Future[None] | None = None  # set while this generator waits for frames
    room: asyncio.Future[None] | None = None  # set while the reader waits for the buffer to drain
    keepalive_due = False
    last_sent = loop.time()
    timer: asyncio.TimerHandle | None = None

    def wake_up() -> None:
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def read() -> None:
        nonlocal finished, room
        try:
            async for chunk in source:
                frames.append(chunk)
                wake_up()
                if len(frames) >= MAX_BUFFERED:
                    room = loop.create_future()
                    await room
        except Exception as exc:  # handed to the consumer, which raises it
            failure.append(exc)
        finally:
            finished = True
            wake_up()

    def tick() -> None:
        nonlocal keepalive_due, timer
        now, due = loop.time(), last_sent + KEEPALIVE_SECONDS
        if now >= due:
            if wake is not None and not wake.done():  # idle, not busy sending: a keep-alive is due
                keepalive_due = True
                wake.set_result(None)
            due = now + KEEPALIVE_SECONDS
        timer = loop.call_at(due, tick)

    reader = loop.create_task(read())
    timer = loop.call_at(last_sent + KEEPALIVE_SECONDS, tick)
    try:
        while True:
            if frames:
                batch = frames[0] if len(frames) == 1 else b"".join(frames)
                frames.clear()
                if room is not None and not room.done():
                    room.set_result(None)
                last_sent = loop.time()
                yield batch
            elif finished:
                if failure:
                    raise failure[0]
                return
            elif keepalive_due:
                keepalive_due = False
                last_sent = loop.time()
                yield KEEPALIVE
            else:
                wake = loop.create_future()
                try:
                    await wake
                finally:
                    wake = None
    finally:
        if timer is not None:
            timer.cancel()
        if not reader.done():
            reader.cancel()
            await asyncio.wait({reader})
        if hasattr(source, "aclose"):
            await source.aclose()


def event_stream(source: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(with_keepalive(source), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
