"""One contract, two stores: local memory and a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pytest

from stores import ConversationStore, Kind, reset_store
from stores.local import LocalStore
from stores.redis_store import RedisStore
from tests.conftest import RedisServer


def pair(text: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": text, "timestamp": "t"},
        {"role": "assistant", "content": f"re: {text}", "timestamp": "t"},
    ]


@pytest.fixture(params=["local", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ConversationStore]:
    if request.param == "local":
        reset_store()
        yield LocalStore()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    redis_store = RedisStore(server.url, prefix="contract:")
    await redis_store.flush()
    yield redis_store
    await redis_store.flush()
    await redis_store.aclose()


async def test_it_appends_turns_in_order(store: ConversationStore) -> None:
    await store.append(Kind.CHAT, "c1", pair("one"), model="m1", tokens=5)
    result = await store.append(Kind.CHAT, "c1", pair("two"), model="m2", tokens=7)
    assert (result.message_count, result.total_tokens) == (4, 12)
    conversation = await store.get(Kind.CHAT, "c1")
    assert conversation is not None
    assert [m["content"] for m in conversation.messages] == ["one", "re: one", "two", "re: two"]
    assert conversation.model == "m2" and conversation.total_tokens == 12
    assert await store.get(Kind.CHAT, "missing") is None


async def test_it_keeps_kinds_apart(store: ConversationStore) -> None:
    await store.append(Kind.CHAT, "same", pair("x"), model="m", tokens=0)
    assert await store.get(Kind.MEMORY, "same") is None
    assert await store.count(Kind.MEMORY) == 0 and await store.count(Kind.CHAT) == 1


async def test_it_never_loses_a_concurrent_append(store: ConversationStore) -> None:
    await asyncio.gather(
        *[store.append(Kind.CHAT, "busy", pair(f"q{n}"), model="m", tokens=1) for n in range(50)]
    )
    conversation = await store.get(Kind.CHAT, "busy")
    assert conversation is not None and conversation.message_count == 100
    for user, reply in zip(conversation.messages[::2], conversation.messages[1::2], strict=True):
        assert reply["content"] == f"re: {user['content']}"
    assert conversation.total_tokens == 50


async def test_it_pages_newest_first(store: ConversationStore) -> None:
    for n in range(5):
        await store.append(Kind.MEMORY, f"p{n}", pair(f"m{n}"), model="m", tokens=0)
    total, page = await store.page(Kind.MEMORY, limit=2, offset=1)
    assert total == 5
    assert [c.id for c in page] == ["p3", "p2"]
    assert page[0].message_count == 2 and page[0].last_message == "re: m3"


async def test_it_deletes_and_clears(store: ConversationStore) -> None:
    for n in range(3):
        await store.append(Kind.MEMORY, f"d{n}", pair("x"), model="m", tokens=0)
    assert await store.delete(Kind.MEMORY, "d0") is True
    assert await store.delete(Kind.MEMORY, "d0") is False
    assert await store.count(Kind.MEMORY) == 2
    assert await store.clear(Kind.MEMORY) == 2
    assert await store.count(Kind.MEMORY) == 0 and await store.get(Kind.MEMORY, "d1") is None


async def test_it_evicts_the_least_recently_written(store: ConversationStore, settings: Any) -> None:
    settings.CONVERSATION_MAX = 3
    for name in ("a", "b", "c", "a", "d"):
        await store.append(Kind.CHAT, name, pair(name), model="m", tokens=0)
    total, page = await store.page(Kind.CHAT, limit=10, offset=0)
    assert total == 3 and [c.id for c in page] == ["d", "a", "c"]
    assert await store.get(Kind.CHAT, "b") is None
    assert (await store.usage())["evictions"] == 1


async def test_it_drops_the_oldest_messages(store: ConversationStore, settings: Any) -> None:
    settings.CONVERSATION_MAX_MESSAGES = 4
    for n in range(3):
        await store.append(Kind.CHAT, "long", pair(f"m{n}"), model="m", tokens=0)
    conversation = await store.get(Kind.CHAT, "long")
    assert conversation is not None
    assert [m["content"] for m in conversation.messages] == ["m1", "re: m1", "m2", "re: m2"]
    assert conversation.dropped_messages == 2 and conversation.message_count == 4


async def test_it_expires_idle_conversations(store: ConversationStore, settings: Any) -> None:
    settings.CONVERSATION_TTL = 60
    await store.append(Kind.CHAT, "idle", pair("x"), model="m", tokens=0)
    with mock.patch("time.time", return_value=10**11), mock.patch("time.monotonic", return_value=10**11):
        assert await store.count(Kind.CHAT) == 0
        total, page = await store.page(Kind.CHAT, limit=10, offset=0)
        assert total == 0 and page == []


async def test_it_refreshes_the_ttl_on_each_write(store: ConversationStore, settings: Any) -> None:
    if isinstance(store, RedisStore):
        settings.CONVERSATION_TTL = 100
        await store.append(Kind.CHAT, "ttl", pair("x"), model="m", tokens=0)
        settings.CONVERSATION_TTL = 5000
        await store.append(Kind.CHAT, "ttl", pair("y"), model="m", tokens=0)
        ttl = await store._redis.ttl("contract:conv:chat:ttl:meta")
        assert 4000 < ttl <= 5000
    else:
        settings.CONVERSATION_TTL = 100
        start = time.monotonic()
        await store.append(Kind.CHAT, "ttl", pair("x"), model="m", tokens=0)
        with mock.patch("stores.local.time.monotonic", return_value=start + 50):
            await store.append(Kind.CHAT, "ttl", pair("y"), model="m", tokens=0)
        with mock.patch("stores.local.time.monotonic", return_value=start + 120):
            assert await store.get(Kind.CHAT, "ttl") is not None
        with mock.patch("stores.local.time.monotonic", return_value=start + 200):
            assert await store.get(Kind.CHAT, "ttl") is None


async def test_it_counts_usage(store: ConversationStore) -> None:
    await store.record_call("m1", prompt_tokens=3, completion_tokens=4, error=None)
    await store.record_call("m1", prompt_tokens=0, completion_tokens=0, error="upstream_timeout")
    usage = await store.usage()
    assert usage["requests"] == 2 and usage["errors"] == 1 and usage["error_rate"] == 0.5
    assert usage["by_model"]["m1"] == {"requests": 2, "errors": 1, "prompt_tokens": 3, "completion_tokens": 4}
    assert usage["errors_by_kind"] == {"upstream_timeout": 1}
    assert usage["total_tokens"] == 7


async def test_it_caches_values(store: ConversationStore) -> None:
    await store.cache_set("k", [{"id": "a"}], 60)
    assert await store.cache_get("k") == [{"id": "a"}]
    assert await store.cache_get("absent") is None
