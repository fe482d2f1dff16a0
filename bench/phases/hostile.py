"""Phase 6: a 10 MB request header while /health is timed (the header-limit choice), and 50 sequential
/openapi.json requests (the schema served from memory)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import httpx

from common import HOST
from phases import PhaseContext
from phases.streaming import _spread

FLOOD_BYTES = 10 * 2**20


def _flood(port: int, size: int) -> tuple[bytes, float]:
    """One request whose single header is `size` bytes; (the answer's first bytes, seconds to it)."""
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=30) as sock:
        with contextlib.suppress(OSError):  # refused before it was all sent: the answer is still there
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Flood: ")
            piece = b"a" * 65536
            for _ in range(size // len(piece)):
                sock.sendall(piece)
            sock.sendall(b"\r\n\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            answer = sock.recv(64)
    return answer, time.perf_counter() - started


def run(ctx: PhaseContext) -> dict[str, Any]:
    svc = ctx.svc
    print("6. hostile edge: a 10 MB header while /health is timed; 50 x /openapi.json ...", flush=True)
    probes: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=svc.url, timeout=30.0) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get("/health")
                probes.append((time.perf_counter() - started) * 1000)
                time.sleep(0.005)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    time.sleep(0.3)
    answer, took = _flood(svc.port, FLOOD_BYTES)
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=30)
    schema: list[float] = []
    with httpx.Client(base_url=svc.url, timeout=30.0) as client:
        client.get("/openapi.json").raise_for_status()
        for _ in range(50):
            started = time.perf_counter()
            client.get("/openapi.json").raise_for_status()
            schema.append((time.perf_counter() - started) * 1000)
    return {
        "flood_bytes": FLOOD_BYTES,
        "flood_answer": answer.split(b"\r\n", 1)[0].decode(errors="replace"),
        "flood_seconds": took,
        "health_during_flood_ms": _spread(probes),
        "schema_ms": _spread(schema),
    }
