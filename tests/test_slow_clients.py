"""A client that sends its request a byte at a time is cut off at REQUEST_READ_TIMEOUT (head or body)."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import orjson
import pytest

from tests.conftest import LiveServer
from tests.fake_upstream import FakeUpstream

DEADLINE = 3.0


@pytest.fixture(scope="module")
def server(fake_upstream: FakeUpstream) -> Iterator[LiveServer]:
    live = LiveServer({"LLM_BASE_URL": fake_upstream.url, "REQUEST_READ_TIMEOUT": str(DEADLINE)})
    yield live
    live.stop()


def connect(server: LiveServer) -> socket.socket:
    parsed = urlparse(server.url)
    return socket.create_connection((parsed.hostname, parsed.port), timeout=10)


def trickle(server: LiveServer, first: bytes, drip: bytes, every: float = 1.0) -> tuple[bytes, float]:
    """Send `first`, then one byte of `drip` every `every` seconds until the server answers and ends
    the connection; returns what it answered and the seconds from connecting until it ended it."""
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(first)
    sock.settimeout(every)
    answer = b""
    drops = itertools.cycle(drip) if drip else None
    with sock:
        while time.monotonic() - started < DEADLINE + 5:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if drops is not None:
                    try:
                        sock.send(bytes([next(drops)]))
                    except OSError:
                        break
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    return answer, time.monotonic() - started


def error_of(answer: bytes) -> dict[str, str]:
    body = answer.partition(b"\r\n\r\n")[2]
    return dict(orjson.loads(body[body.index(b"{") : body.rindex(b"}") + 1]))  # plain or one chunk


def test_it_cuts_off_a_head_sent_one_byte_a_second(server: LiveServer) -> None:
    answer, took = trickle(server, b"GET /health HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 100)
    assert DEADLINE - 0.3 < took < DEADLINE + 1.5
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert error_of(answer)["code"] == "request_timeout"


def test_it_cuts_off_a_body_sent_one_byte_a_second(server: LiveServer) -> None:
    head = (
        b"POST /memory-chat/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200\r\n\r\n"
    )
    answer, took = trickle(server, head, b'{"message": "' + b"s" * 180)
    assert DEADLINE - 0.3 < took < DEADLINE + 1.5
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert b"connection: close" in answer.lower()
    error = error_of(answer)
    assert error["code"] == "request_timeout" and error["status"] == "error"


def test_it_closes_a_connection_that_never_sends_anything(server: LiveServer) -> None:
    answer, took = trickle(server, b"", b"")
    assert answer == b""
    assert DEADLINE - 0.3 < took < DEADLINE + 1.5


def test_it_lets_an_unhurried_client_finish_in_time(server: LiveServer) -> None:
    sock = connect(server)
    with sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        time.sleep(1.0)
        sock.sendall(b"\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    with httpx.Client(base_url=server.url) as client:  # keep-alive: each request has its own deadline
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(DEADLINE / 2)
