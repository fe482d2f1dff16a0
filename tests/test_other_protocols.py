"""A WebSocket upgrade is refused cleanly: a 403, no error in the log, one access line."""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from tests.conftest import LiveServer
from tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def server(fake_upstream: FakeUpstream) -> Iterator[LiveServer]:
    live = LiveServer({"LLM_BASE_URL": fake_upstream.url, "LOG_LEVEL": "INFO"})
    yield live
    live.stop()


def handshake(server: LiveServer, path: str) -> bytes:
    parsed = urlparse(server.url)
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), key)
    )
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.parametrize("path", ["/ws", "/chat/message", "/health"])
def test_it_refuses_a_websocket_upgrade_without_an_error(server: LiveServer, path: str) -> None:
    before = server.log().count(f"gateway.access: WEBSOCKET {path} 403")
    answer = handshake(server, path)
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
    time.sleep(0.2)
    log = server.log()
    assert log.count(f"gateway.access: WEBSOCKET {path} 403") == before + 1
    assert "ERROR" not in log and "Traceback" not in log and " 500 " not in log
