"""How many times a turn waits on Redis: at most two round trips before its upstream call and one after
it, on /chat/message, /v1/chat/completions and /v1/responses, with the rate limit and both token budgets
on. Counted by a TCP proxy between the service and a real redis-server: a round trip is the client
sending again after Redis has answered (a pipeline or a script is one)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import SECRET, LiveServer, RedisServer
from tests.fake_upstream import FakeUpstream, Reply

UPSTREAM_DELAY = 0.4  # the upstream call takes this long: round trips before it and after it fall apart


@dataclass
class CountingProxy:
    """Forwards to Redis and notes when each round trip started."""

    target: int
    starts: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            turn = {"answered": True}  # whether Redis has answered since the client last sent
            threading.Thread(target=self._pump, args=(client, server, turn, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, turn, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, turn: dict[str, bool], asks: bool) -> None:
        try:
            while data := source.recv(65536):
                with self.lock:
                    if asks and turn["answered"]:
                        self.starts.append(time.monotonic())
                    turn["answered"] = not asks
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                sock.close()

    def between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(start <= t < end for t in self.starts)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def counted(fake_upstream: FakeUpstream, redis_server: RedisServer) -> Iterator[tuple[CountingProxy, str]]:
    proxy = CountingProxy(redis_server.port)
    server = LiveServer(
        {
            "LLM_BASE_URL": fake_upstream.url,
            "LLM_API_KEY": SECRET,
            "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/5",
            "LLM_MAX_RETRIES": "0",
            "RATE_LIMIT": "1000/minute",
            "CLIENT_TOKEN_BUDGET": "1000000/day",
            "TOTAL_TOKEN_BUDGET": "10000000/day",
        }
    )
    yield proxy, server.url
    server.stop()
    proxy.close()


def round_trips(
    proxy: CountingProxy, fake: FakeUpstream, url: str, body: dict[str, Any]
) -> tuple[int, int, httpx.Response]:
    """(round trips before the upstream call, after it) of one request; the second of two alike, so
    connections and scripts are in place."""
    for _ in range(2):
        fake.queue(Reply(delay=UPSTREAM_DELAY))
        started = time.monotonic()
        answer = httpx.post(url, json=body, timeout=10)
        ended = time.monotonic()
        assert answer.status_code == 200, answer.text
    time.sleep(0.05)  # anything still on its way to Redis
    middle = started + UPSTREAM_DELAY / 2
    return proxy.between(started, middle), proxy.between(middle, ended + 0.05), answer


def test_it_makes_a_chat_turn_in_one_round_trip_before_and_one_after(
    counted: tuple[CountingProxy, str], fake_upstream: FakeUpstream
) -> None:
    """A new conversation's turn: one round trip before (rate limit, budgets, conversation) and one
    after. A turn that continues one sends a history its body does not hold: with token budgets on,
    its budgets hold it in a second round trip just before the call (see guards.hold_for)."""
    proxy, base = counted
    before, after, answer = round_trips(proxy, fake_upstream, f"{base}/chat/message", {"message": "new"})
    assert (before, after) == (1, 1)
    httpx.post(f"{base}/chat/message", json={"message": "first", "conversation_id": "rt"}, timeout=10)
    before, after, answer = round_trips(
        proxy, fake_upstream, f"{base}/chat/message", {"message": "again", "conversation_id": "rt"}
    )
    assert answer.json()["message_count"] >= 4
    assert (before, after) == (2, 1)


def test_it_forwards_a_chat_completion_in_one_round_trip_before_and_one_after(
    counted: tuple[CountingProxy, str], fake_upstream: FakeUpstream
) -> None:
    proxy, base = counted
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert round_trips(proxy, fake_upstream, f"{base}/v1/chat/completions", body)[:2] == (1, 1)


def test_it_continues_a_response_chain_in_two_round_trips_before_and_one_after(
    counted: tuple[CountingProxy, str], fake_upstream: FakeUpstream
) -> None:
    proxy, base = counted
    url = f"{base}/v1/responses"
    first = httpx.post(url, json={"model": "openai/gpt-4o-mini", "input": "one"}, timeout=10).json()
    second = httpx.post(
        url,
        json={"model": "openai/gpt-4o-mini", "input": "two", "previous_response_id": first["id"]},
        timeout=10,
    ).json()
    body = {"model": "openai/gpt-4o-mini", "input": "three", "previous_response_id": second["id"]}
    before, after, _ = round_trips(proxy, fake_upstream, url, body)
    assert before <= 2 and after == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/message", {"message": "streamed", "conversation_id": "rt-stream", "stream": True}),
        ("/v1/responses", {"model": "openai/gpt-4o-mini", "input": "streamed", "stream": True}),
    ],
)
def test_it_stores_a_streamed_turn_and_its_call_in_one_write(
    counted: tuple[CountingProxy, str], fake_upstream: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    """A streamed turn's call statistics go with the turn, as a whole answer's do: one write after."""
    proxy, base = counted
    before, after, answer = round_trips(proxy, fake_upstream, f"{base}{path}", body)
    assert b"Fake reply to: streamed" in answer.content
    assert (before, after) == (1, 1)
    usage = httpx.get(f"{base}/chat/health", timeout=10).json()
    assert usage["usage"]["requests"] >= 4  # the streamed calls were counted all the same
