"""Concurrent turns are all kept, and a slow upstream call blocks nothing else."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream, Reply


async def test_it_stores_concurrent_turns_to_one_conversation(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(*[Reply(delay=0.05 * (n % 3)) for n in range(50)])
    responses = await asyncio.gather(
        *[
            client.post(
                "/chat/message",
                {"message": f"q{n}", "conversation_id": "busy"},
                content_type="application/json",
            )
            for n in range(50)
        ]
    )
    assert [r.status_code for r in responses] == [200] * 50
    messages = (await client.get("/chat/conversations/busy")).json()["conversation"]["messages"]
    assert len(messages) == 100
    for user, reply in zip(messages[::2], messages[1::2], strict=True):
        assert user["role"] == "user"
        assert reply["content"] == f"Fake reply to: {user['content']}"
    assert sorted(m["content"] for m in messages[::2]) == sorted(f"q{n}" for n in range(50))


def test_it_answers_health_while_an_upstream_call_is_slow(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(delay=2.0))
    finished: dict[str, float] = {}

    def slow_chat() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=30) as other:
            assert other.post("/chat/message", json={"message": "slow"}).status_code == 200
        finished["chat"] = time.monotonic()

    worker = threading.Thread(target=slow_chat)
    worker.start()
    deadline = time.monotonic() + 5
    while not fake_upstream.completions() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake_upstream.completions(), "the slow call never reached the upstream"
    for path in ("/health", "/chat/health", "/api/hf/ready", "/memory-chat/health"):
        assert http.get(path).status_code == 200
    finished["health"] = time.monotonic()
    worker.join()
    assert finished["health"] < finished["chat"]
