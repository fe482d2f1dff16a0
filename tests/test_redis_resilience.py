"""One worker on a real Redis under load: it never fails while Redis is healthy (a pool that waits, a
dead pooled connection retried on a fresh one, readiness steady), and when Redis stalls mid-write the
answer says the turn may have been stored; the client's retry with the same X-Request-ID stores it once."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, LiveServer, RedisCluster, RedisServer, require_program
from tests.fake_upstream import FakeUpstream, Reply


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_program("redis-server", "redis-server"), tmp_path).start()
    yield server
    server.stop()


def serve(fake: FakeUpstream, redis: RedisServer, **extra: str) -> LiveServer:
    return LiveServer(
        {
            "LLM_BASE_URL": fake.url,
            "LLM_API_KEY": SECRET,
            "REDIS_URL": redis.url,
            "LLM_MAX_RETRIES": "0",
            "RATE_LIMIT": "0",
            "CONVERSATION_MAX": "5000",
            **extra,
        }
    )


async def burst(base: str, count: int, prefix: str) -> list[int]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        calls = [
            client.post(f"{base}/chat/message", json={"message": f"m{n}", "conversation_id": f"{prefix}{n}"})
            for n in range(count)
        ]
        return [r.status_code for r in await asyncio.gather(*calls)]


def test_it_stores_300_concurrent_turns_and_stays_ready(
    fake_upstream: FakeUpstream, redis: RedisServer
) -> None:
    server = serve(fake_upstream, redis)
    probes: list[int] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                probes.append(client.get(f"{server.url}/api/hf/ready").status_code)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    try:
        prober.start()
        statuses = asyncio.run(burst(server.url, 300, "crowd-"))
        stop.set()
        prober.join()
        assert statuses == [200] * 300
        listed = httpx.get(f"{server.url}/chat/conversations?limit=1").json()
        assert listed["total"] == 300
        assert probes and set(probes) == {200}
    finally:
        stop.set()
        server.stop()


def test_it_answers_a_burst_right_after_a_redis_restart(
    fake_upstream: FakeUpstream, redis: RedisServer
) -> None:
    server = serve(fake_upstream, redis)
    try:
        assert set(asyncio.run(burst(server.url, 90, "before-"))) == {200}  # the pool holds many now
        redis.stop()
        redis.start()
        assert asyncio.run(burst(server.url, 90, "after-")) == [200] * 90
        assert httpx.get(f"{server.url}/api/hf/ready").status_code == 200
    finally:
        server.stop()


def test_it_stores_a_retried_turn_once_when_redis_stalled_mid_write(
    fake_upstream: FakeUpstream, redis: RedisServer
) -> None:
    server = serve(fake_upstream, redis, REDIS_TIMEOUT="0.5")
    assert redis.process is not None
    pid = redis.process.pid
    headers = {"X-Request-ID": "turn-retry-1"}
    body = {"message": "keep me once", "conversation_id": "stall"}
    try:
        fake_upstream.queue(Reply(delay=0.6))  # Redis stops while the upstream answers
        timer = threading.Timer(0.3, os.kill, (pid, signal.SIGSTOP))
        timer.start()
        try:
            first = httpx.post(f"{server.url}/chat/message", json=body, headers=headers, timeout=10)
        finally:
            timer.join()
            os.kill(pid, signal.SIGCONT)
        assert first.status_code == 503
        assert first.json()["code"] == "store_unavailable"
        assert "may have been stored" in first.json()["message"]
        again = httpx.post(f"{server.url}/chat/message", json=body, headers=headers, timeout=10)
        assert again.status_code == 200
        assert again.json()["message_count"] == 2
        stored = httpx.get(f"{server.url}/chat/conversations/stall").json()["conversation"]["messages"]
        assert [m["content"] for m in stored[::2]] == ["keep me once"]
        # the same request id with another message is another turn
        other = httpx.post(
            f"{server.url}/chat/message", json={**body, "message": "and me"}, headers=headers, timeout=10
        )
        assert other.json()["message_count"] == 4
    finally:
        server.stop()


def test_it_stores_300_concurrent_turns_on_a_cluster(
    fake_upstream: FakeUpstream, redis_cluster: RedisCluster
) -> None:
    server = LiveServer(
        {
            "LLM_BASE_URL": fake_upstream.url,
            "LLM_API_KEY": SECRET,
            "REDIS_URL": redis_cluster.url,
            "REDIS_CLUSTER": "true",
            "REDIS_MAX_CONNECTIONS": "16",  # far fewer than the requests: they wait their turn
            "LLM_MAX_RETRIES": "0",
            "RATE_LIMIT": "0",
            "CONVERSATION_MAX": "5000",
        }
    )
    try:
        before = httpx.get(f"{server.url}/chat/conversations?limit=1").json()["total"]  # a shared cluster
        assert asyncio.run(burst(server.url, 300, "cluster-crowd-")) == [200] * 300
        assert httpx.get(f"{server.url}/chat/conversations?limit=1").json()["total"] == before + 300
    finally:
        server.stop()
