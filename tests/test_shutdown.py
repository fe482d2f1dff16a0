"""On SIGTERM, open streams get SHUTDOWN_GRACE_SECONDS to finish; then they end with an error frame,
the process exits, and nothing is half-stored."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx
import orjson

from tests.conftest import SECRET, LiveServer, RedisServer
from tests.fake_upstream import FakeUpstream, Reply

GRACE = 2


class Reader(threading.Thread):
    """Reads one streamed /chat/message answer, event by event."""

    def __init__(self, url: str, conversation_id: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.conversation_id = conversation_id
        self.events: list[tuple[str, Any]] = []
        self.first_delta = threading.Event()

    def run(self) -> None:
        body = {"message": "q", "conversation_id": self.conversation_id, "stream": True}
        try:
            with httpx.stream("POST", f"{self.url}/chat/message", json=body, timeout=30) as response:
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((event, orjson.loads(line[6:])))
                        if event == "delta":
                            self.first_delta.set()
        except httpx.HTTPError as exc:
            self.events.append(("cut", repr(exc)))


def test_it_ends_open_streams_when_the_grace_is_over_and_stores_nothing(
    fake_upstream: FakeUpstream, redis_server: RedisServer
) -> None:
    env = {
        "LLM_BASE_URL": fake_upstream.url,
        "LLM_API_KEY": SECRET,
        "LLM_MAX_RETRIES": "0",
        "SHUTDOWN_GRACE_SECONDS": str(GRACE),
        "REDIS_URL": redis_server.url.replace("/0", "/5"),
    }
    server = LiveServer(env)
    fake_upstream.queue(
        Reply(endless=True, chunk_delay=0.2),  # never ends by itself
        Reply(chunks=[f"w{n} " for n in range(5)], chunk_delay=0.2),  # ends within the grace
    )
    endless = Reader(server.url, "grace-endless")
    endless.start()
    assert endless.first_delta.wait(5)
    finite = Reader(server.url, "grace-finite")
    finite.start()
    assert finite.first_delta.wait(5)

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=GRACE + 10)
    took = time.monotonic() - started
    endless.join(timeout=5)
    finite.join(timeout=5)
    log = server.stop()

    assert GRACE - 0.5 < took < GRACE + 1, log[-3000:]
    assert finite.events[-1][0] == "done"
    assert endless.events[-1][0] == "error", endless.events[-3:]
    assert endless.events[-1][1]["code"] == "shutting_down"
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]

    after = LiveServer(env)  # the same store, read by a fresh process
    try:
        assert httpx.get(f"{after.url}/chat/conversations/grace-endless").status_code == 404
        stored = httpx.get(f"{after.url}/chat/conversations/grace-finite").json()["conversation"]
        assert stored["messages"][-1]["content"] == "w0 w1 w2 w3 w4 "
    finally:
        after.stop()
