"""A TCP proxy that holds every chunk for a fixed delay in each direction: Redis "1 ms away" on loopback.

`python bench/delay_proxy.py --port P --target 127.0.0.1:6379 --delay-ms 0.5` prints "ready <port>".
Two threads a direction per connection: one reads and stamps each chunk with when it may go, the other
sleeps until then (time.sleep, a nanosleep: precise to tens of microseconds, where an event loop's
timers round up to whole milliseconds) and sends it, so order is kept and the delay does not add up.
No root needed (tc netem would need it, and would slow every program on loopback).
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import socket
import threading
import time


def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
    pending: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def read() -> None:
        try:
            while data := source.recv(65536):
                pending.put((time.monotonic() + delay, data))
        except OSError:
            pass
        pending.put((0.0, b""))

    def write() -> None:
        try:
            while True:
                due, data = pending.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=write, daemon=True).start()


def serve(port: int, target: tuple[str, int], delay: float) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=512)
    print(f"ready {listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        upstream = socket.create_connection(target)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _pump(client, upstream, delay)
        _pump(upstream, client, delay)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--target", required=True)
    parser.add_argument("--delay-ms", type=float, default=0.5)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    serve(args.port, (host, int(port)), args.delay_ms / 1000)


if __name__ == "__main__":
    main()
