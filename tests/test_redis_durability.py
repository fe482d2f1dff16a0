"""With REDIS_URL, durability is Redis's own: with append-only files on, a conversation written through the
service survives Redis stopping or crashing; with them off, a crash loses it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stores import Kind
from stores.redis_store import RedisStore
from tests.conftest import SECRET, LiveServer, RedisServer, require_program
from tests.fake_upstream import FakeUpstream


def pair(text: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": text, "timestamp": "t"},
        {"role": "assistant", "content": f"re: {text}", "timestamp": "t"},
    ]


def redis_with(tmp_path: Path, appendonly: str, appendfsync: str) -> RedisServer:
    binary = require_program("redis-server", "redis-server")
    options = ("--appendonly", appendonly, "--appendfsync", appendfsync)  # RDB saving stays off
    return RedisServer(binary, tmp_path, options=options).start()


def shut_down(redis: RedisServer) -> None:
    """`redis-cli shutdown`: the graceful stop (it flushes and fsyncs the append-only file)."""
    cli = require_program("redis-cli", "redis-tools")
    subprocess.run([cli, "-p", str(redis.port), "shutdown"], check=False, capture_output=True, timeout=10)
    assert redis.process is not None
    redis.process.wait(timeout=10)
    redis.process = None


@pytest.mark.parametrize(
    ("appendonly", "appendfsync", "stop", "kept"),
    [
        ("yes", "always", "crash", True),
        ("yes", "everysec", "shutdown", True),
        ("no", "everysec", "crash", False),  # the control: without AOF a crash loses everything
    ],
)
async def test_it_keeps_a_conversation_through_a_redis_restart_with_aof(
    tmp_path: Path, appendonly: str, appendfsync: str, stop: str, kept: bool
) -> None:
    redis = redis_with(tmp_path, appendonly, appendfsync)
    try:
        store = RedisStore(redis.url)
        await store.append(Kind.CHAT, "durable", pair("one"), owner="anonymous", model="m", tokens=19)
        await store.append(Kind.CHAT, "durable", pair("two"), owner="anonymous", model="m", tokens=19)
        await store.record_call("m", prompt_tokens=24, completion_tokens=14, error=None)
        before = await store.get(Kind.CHAT, "durable", owner="anonymous")
        await store.aclose()
        if stop == "crash":
            redis.kill()
        else:
            shut_down(redis)
        redis.start()
        store = RedisStore(redis.url)
        after = await store.get(Kind.CHAT, "durable", owner="anonymous")
        usage = await store.usage()
        await store.aclose()
    finally:
        redis.stop()
    if kept:
        assert after == before and after is not None and after.total_tokens == 38
        assert usage["total_tokens"] == 38
    else:
        assert after is None and usage["requests"] == 0


def test_it_keeps_a_conversation_written_through_the_service_when_redis_crashes(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    redis = redis_with(tmp_path, "yes", "always")
    server = LiveServer(
        {
            "LLM_BASE_URL": fake_upstream.url,
            "LLM_API_KEY": SECRET,
            "REDIS_URL": redis.url,
            "LLM_MAX_RETRIES": "0",
            "RATE_LIMIT": "0",
            "BACKEND_API_KEYS": "",
        }
    )
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for text in ("first", "second"):
                sent = http.post("/chat/message", json={"message": text, "conversation_id": "aof"})
                assert sent.status_code == 200
            before = http.get("/chat/conversations/aof").json()
            usage = http.get("/chat/health").json()["usage"]
            redis.kill()
            redis.start()
            deadline = time.monotonic() + 10
            while http.get("/api/hf/ready").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert http.get("/chat/conversations/aof").json() == before
            assert http.get("/chat/health").json()["usage"] == usage
    finally:
        server.stop()
        redis.stop()
    assert before["conversation"]["message_count"] == 4
