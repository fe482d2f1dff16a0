"""A request head over 64 KiB is refused at once (431), and nobody else waits for it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import orjson
import pytest

from config import protocol
from tests.conftest import ROOT, LiveServer
from tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def server(fake_upstream: FakeUpstream) -> Iterator[LiveServer]:
    live = LiveServer({"LLM_BASE_URL": fake_upstream.url, "LOG_LEVEL": "INFO"})
    yield live
    live.stop()


def address(server: LiveServer) -> tuple[str, int]:
    parsed = urlparse(server.url)
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def flood(server: LiveServer, header_bytes: int) -> bytes:
    """Send a request whose one header is `header_bytes` long (in 64 KiB pieces); what comes back."""
    with socket.create_connection(address(server), timeout=10) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Flood: ")
            piece = b"a" * 65536
            for _ in range(header_bytes // len(piece)):
                sock.sendall(piece)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # refused before it was all sent: the answer is still there to read
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


class Prober:
    """GET /health in a loop on its own connection, timing each answer: (sent, answered)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.timings: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                assert client.get("/health").status_code == 200
                self.timings.append((started, time.perf_counter()))
                time.sleep(0.005)

    def during(self, start: float, end: float) -> list[float]:
        """How long each request took that was in flight at some point between start and end."""
        return [done - sent for sent, done in self.timings if sent <= end and done >= start]

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.timings) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def __enter__(self) -> Prober:
        self.thread.start()
        self.wait_for(5)  # warmed up, and answering
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wait_for(len(self.timings) + 5)
        self.stop.set()
        self.thread.join(timeout=10)


def test_it_refuses_a_10_mb_header_within_a_second_while_others_are_answered(server: LiveServer) -> None:
    with Prober(server.url) as prober:
        started = time.perf_counter()
        answer = flood(server, 10 * 2**20)
        answered = time.perf_counter()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert answered - started < 1.0
    # The requests around the flood (50 ms either side: it is over in a few milliseconds)
    meanwhile = prober.during(started - 0.05, answered + 0.05)
    assert meanwhile
    assert max(meanwhile) < 0.1, sorted(meanwhile)[-5:]


def test_it_answers_431_in_the_error_shape(server: LiveServer) -> None:
    head, _, body = flood(server, 128 * 1024).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"content-type: application/json" in head.lower()
    error = orjson.loads(body)
    assert error["status"] == "error" and error["code"] == "request_header_too_large"
    assert error["request_id"] and error["timestamp"]
    log = server.log()
    assert "gateway.access: - - 431 " in log  # one access line, as for any request
    assert "Traceback" not in log


def test_it_refuses_a_large_head_that_came_in_one_piece(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/health", headers={"X-Big": "b" * 70_000})
    assert response.status_code == 431
    assert response.json()["code"] == "request_header_too_large"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_it_accepts_headers_under_the_bound(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/health", headers={f"X-Part-{n}": "c" * 4000 for n in range(14)})
    assert response.status_code == 200


def test_it_loads_before_django_is_set_up() -> None:
    """uvicorn's workers import the protocol before the app (and so before Django's settings)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", "import config.protocol"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]


def test_it_refuses_to_run_on_a_uvicorn_it_was_not_written_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol.uvicorn, "__version__", "0.99.0")
    with pytest.raises(RuntimeError, match=r"written for uvicorn 0\.54"):
        protocol.check_uvicorn()
