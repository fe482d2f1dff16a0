"""The one place that bends uvicorn: its httptools protocol with the bounds uvicorn 0.54 lacks.

`config.serve` starts uvicorn with `--http config.protocol:BoundedHttpToolsProtocol`. Over uvicorn's
own protocol (the fast one) it adds, for each connection:

- **A bound on the request head** (request line and headers): over MAX_HEAD_BYTES, a 431 in the
  project's error shape. httptools joins the pieces of one header with `bytes +=`, so without a bound
  a header of N bytes costs time growing with N² on the event loop while every other request waits
  (80 MB: 7.8 s). A head still arriving is counted chunk by chunk, and refused as soon as it is over
  (at most one chunk, 256 KiB, more is ever parsed); a complete head that came in one large chunk is
  measured and refused through the edge, like any other refusal.
- **A deadline for the request head**: REQUEST_READ_TIMEOUT from its first byte; a client still
  sending it then gets a 408. A connection that sends nothing at all is closed after as long. The
  same deadline then bounds the body: it is handed to the edge in the scope (READ_DEADLINE), which
  answers 408 when the body is late.
- **A deadline for the client to take the answer**: once more than 64 KiB of it waits to be sent
  (the transport's high-water mark, where uvicorn stops writing), the client has
  RESPONSE_WRITE_TIMEOUT to take enough of it to resume writing, else the connection is aborted:
  what was buffered is dropped and the request sees its client gone (an open stream ends and closes
  its upstream call). uvicorn waits for such a client forever, holding the whole answer.
- **A bound on pipelining**: at most MAX_PIPELINED requests wait behind the one being answered on a
  connection; past it the connection is closed. httptools parses a whole read (up to 256 KiB) at
  once, and uvicorn queued every request in it: a client that pipelined tiny requests and never read
  the answers held about 15 MiB a connection.
- A head refused here is answered, then the connection is half-closed and what the client still
  sends is read and dropped for up to LINGER_SECONDS before it is closed: a client still sending
  would otherwise get a reset instead of the answer.
- **The start of a shutdown**, which uvicorn announces to each connection (`shutdown()`): open
  streams get SHUTDOWN_GRACE_SECONDS to finish, then end with an error frame (`upstream`).

uvicorn's h11 protocol bounds the head too (`--h11-max-incomplete-event-size`) but has no head
deadline either, and is slower: README "Hostile clients" has the measured figures of each choice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import uvicorn
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from config.edge import READ_DEADLINE, REFUSED, finished
from core import telemetry
from core.clock import utc_now_iso

UVICORN_WRITTEN_FOR = "0.54."
MAX_HEAD_BYTES = 64 * 1024
MAX_PIPELINED = 32
LINGER_SECONDS = 1.0

IDLE, HEAD, BODY, CLOSING = 0, 1, 2, 3  # where a connection is in its current request

logger = logging.getLogger("gateway.protocol")


def check_uvicorn() -> None:
    """This module overrides uvicorn's parser callbacks: refuse to run on a uvicorn it was not checked
    against."""
    if not uvicorn.__version__.startswith(UVICORN_WRITTEN_FOR):
        raise RuntimeError(
            f"config/protocol.py was written for uvicorn {UVICORN_WRITTEN_FOR}x; check it against "
            f"uvicorn {uvicorn.__version__} before upgrading"
        )
    hooks = ["data_received", "on_message_begin", "on_headers_complete", "on_message_complete", "shutdown"]
    hooks += ["pause_writing", "resume_writing", "send_400_response"]
    missing = [name for name in hooks if not callable(getattr(HttpToolsProtocol, name, None))]
    if missing:
        raise RuntimeError(f"uvicorn's HttpToolsProtocol no longer has {missing}")


check_uvicorn()


def _head_too_large() -> tuple[int, str, str]:
    return (431, "request_header_too_large", f"The request's headers are larger than {MAX_HEAD_BYTES} bytes.")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head, a read deadline and a shutdown hook."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout: float = settings.REQUEST_READ_TIMEOUT
        self.stage = IDLE
        self.head_bytes = 0  # of the unfinished head, in the chunks before this one
        self.chunk_bytes = 0  # of the chunk being parsed
        self.heads_begun = 0  # in the chunk being parsed
        self.read_deadline = 0.0
        self.read_timer: asyncio.TimerHandle | None = None
        self.write_timeout: float = settings.RESPONSE_WRITE_TIMEOUT
        self.write_timer: asyncio.TimerHandle | None = None
        self.open_cycles: list[Any] = []  # the requests parsed and not yet answered (pipelining)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._writing_resumed()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        self._writing_resumed()
        super().resume_writing()

    def _writing_resumed(self) -> None:
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _write_timed_out(self) -> None:
        """The client took none of its answer for RESPONSE_WRITE_TIMEOUT: drop it and the connection."""
        self.write_timer = None
        logger.warning(
            "answer dropped: its client took none of it for %gs (%d bytes waiting); connection closed",
            self.write_timeout,
            self.transport.get_write_buffer_size(),
        )
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.stage == CLOSING:
            return  # a refused request's remains: dropped unparsed
        before, self.heads_begun, self.chunk_bytes = self.stage, 0, len(data)
        super().data_received(data)
        if self.stage != HEAD or self.transport.is_closing():
            return
        # Count the chunk when all of it belongs to the unfinished head; a head that began after
        # another request in the same chunk (pipelining) goes uncounted for that one chunk.
        if self.heads_begun == 0 or (self.heads_begun == 1 and before == IDLE):
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self.refuse(*_head_too_large())
                return
        if self.read_timer is None:
            self._arm()

    def on_message_begin(self) -> None:
        if len(self.pipeline) >= MAX_PIPELINED:
            # The requests parsed see their client gone (the one being answered would otherwise write
            # to the aborted line: an error with its traceback), and none queued is started. Raising
            # is the only way to stop httptools in the middle of a read; uvicorn then logs a warning
            # of its own and would answer 400 (send_400_response: not on an aborted line).
            self.stage = CLOSING
            for cycle in self.open_cycles:
                cycle.disconnected = True
                cycle.message_event.set()
            self.pipeline.clear()
            logger.warning("connection closed: more than %d pipelined requests waiting", MAX_PIPELINED)
            self.transport.abort()
            raise ConnectionAbortedError(f"more than {MAX_PIPELINED} pipelined requests waiting")
        super().on_message_begin()
        self.stage = HEAD
        self.head_bytes = 0
        self.heads_begun += 1
        if self.read_timer is not None:  # the connection's first request: its deadline starts now
            self._disarm()
            self._arm()

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        deadline = self.read_deadline if self.read_timer else self.loop.time() + self.read_timeout
        self._disarm()
        self.stage = BODY
        self.scope[READ_DEADLINE] = deadline  # type: ignore[literal-required]
        if self.head_bytes + self.chunk_bytes > MAX_HEAD_BYTES and self._head_size() > MAX_HEAD_BYTES:
            self.scope[REFUSED] = _head_too_large()  # type: ignore[literal-required]
        super().on_headers_complete()
        self.open_cycles = [c for c in self.open_cycles if not c.response_complete]
        self.open_cycles.append(self.cycle)

    def on_message_complete(self) -> None:
        self.stage = IDLE
        super().on_message_complete()

    def shutdown(self) -> None:
        # Imported here: uvicorn's workers import this module before the app, so before Django is set
        # up, and the upstream module needs Django (config.edge and core do not at import).
        import upstream

        upstream.end_calls_within(settings.SHUTDOWN_GRACE_SECONDS)
        super().shutdown()

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _arm(self) -> None:
        self.read_deadline = self.loop.time() + self.read_timeout
        self.read_timer = self.loop.call_at(self.read_deadline, self._read_timed_out)

    def _disarm(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _read_timed_out(self) -> None:
        self.read_timer = None
        if self.stage == HEAD and not self.transport.is_closing():
            self.refuse(
                408, "request_timeout", f"The request was not received within {self.read_timeout:g} seconds."
            )
        elif self.stage == IDLE:
            self.transport.close()

    def refuse(self, status: int, code: str, message: str) -> None:
        """Answer a request whose head never reached the app, in the project's error shape; then drop
        what else comes for a moment before closing."""
        self._disarm()
        elapsed = max(0.0, self.loop.time() - (self.read_deadline - self.read_timeout))
        self.stage = CLOSING
        context = {"request_id": telemetry.request_id_for(None), "route": "unmatched"}
        body = orjson.dumps(
            {
                "status": "error",
                "code": code,
                "message": message,
                "timestamp": utc_now_iso(),
                "request_id": context["request_id"],
            }
        )
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-content-type-options", b"nosniff"),
            (b"x-request-id", context["request_id"].encode()),
        ]
        self.transport.write(
            b"".join([STATUS_LINE[status], *(b"%s: %s\r\n" % pair for pair in headers), b"\r\n", body])
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.read_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        scope = {"type": "http", "method": "-", "path": "-", "client": self.client}
        token = telemetry.request_context.set(context)
        try:
            finished(scope, context, status, elapsed)
        finally:
            telemetry.request_context.reset(token)
