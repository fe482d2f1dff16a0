"""One contract, two stores: local memory and a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pytest

from stores import ConversationStore, Kind, reset_store
from stores.base import stored_id
from stores.local import LocalStore
from stores.redis_store import RedisStore
from tests.conftest import RedisServer


def pair(text: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": text, "timestamp": "t"},
        {"role": "assistant", "content": f"re: {text}", "timestamp": "t"},
    ]


OWNER = "t-0123456789abcdef01234567"


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
    await store.append(Kind.CHAT, "c1", pair("one"), owner=OWNER, model="m1", tokens=5)
    result = await store.append(Kind.CHAT, "c1", pair("two"), owner=OWNER, model="m2", tokens=7)
    assert (result.message_count, result.total_tokens) == (4, 12)
    conversation = await store.get(Kind.CHAT, "c1", owner=OWNER)
    assert conversation is not None
    assert [m["content"] for m in conversation.messages] == ["one", "re: one", "two", "re: two"]
    assert conversation.model == "m2" and conversation.total_tokens == 12
    assert await store.get(Kind.CHAT, "missing", owner=OWNER) is None


async def test_it_keeps_kinds_apart(store: ConversationStore) -> None:
    await store.append(Kind.CHAT, "same", pair("x"), owner=OWNER, model="m", tokens=0)
    assert await store.get(Kind.MEMORY, "same", owner=OWNER) is None
    assert await store.count(Kind.MEMORY) == 0 and await store.count(Kind.CHAT) == 1


async def test_it_never_loses_a_concurrent_append(store: ConversationStore) -> None:
    await asyncio.gather(
        *[store.append(Kind.CHAT, "busy", pair(f"q{n}"), owner=OWNER, model="m", tokens=1) for n in range(50)]
    )
    conversation = await store.get(Kind.CHAT, "busy", owner=OWNER)
    assert conversation is not None and conversation.message_count == 100
    for user, reply in zip(conversation.messages[::2], conversation.messages[1::2], strict=True):
        assert reply["content"] == f"re: {user['content']}"
    assert conversation.total_tokens == 50


async def test_it_pages_newest_first(store: ConversationStore) -> None:
    for n in range(5):
        await store.append(Kind.MEMORY, f"p{n}", pair(f"m{n}"), owner=OWNER, model="m", tokens=0)
    total, page = await store.page(Kind.MEMORY, owner=OWNER, limit=2, offset=1)
    assert total == 5
    assert [c.id for c in page] == ["p3", "p2"]
    assert page[0].message_count == 2 and page[0].last_message == "re: m3"


async def test_it_deletes_and_clears(store: ConversationStore) -> None:
    for n in range(3):
        await store.append(Kind.MEMORY, f"d{n}", pair("x"), owner=OWNER, model="m", tokens=0)
    assert await store.delete(Kind.MEMORY, "d0", owner=OWNER) is True
    assert await store.delete(Kind.MEMORY, "d0", owner=OWNER) is False
    assert await store.count(Kind.MEMORY) == 2
    assert await store.clear(Kind.MEMORY, owner=OWNER) == 2
    assert await store.count(Kind.MEMORY) == 0 and await store.get(Kind.MEMORY, "d1", owner=OWNER) is None


async def test_it_evicts_the_least_recently_written(store: ConversationStore, settings: Any) -> None:
    settings.CONVERSATION_MAX = 3
    for name in ("a", "b", "c", "a", "d"):
        await store.append(Kind.CHAT, name, pair(name), owner=OWNER, model="m", tokens=0)
    total, page = await store.page(Kind.CHAT, owner=OWNER, limit=10, offset=0)
    assert total == 3 and [c.id for c in page] == ["d", "a", "c"]
    assert await store.get(Kind.CHAT, "b", owner=OWNER) is None
    assert (await store.usage())["evictions"] == 1


async def test_it_drops_the_oldest_messages(store: ConversationStore, settings: Any) -> None:
    settings.CONVERSATION_MAX_MESSAGES = 4
    for n in range(3):
        await store.append(Kind.CHAT, "long", pair(f"m{n}"), owner=OWNER, model="m", tokens=0)
    conversation = await store.get(Kind.CHAT, "long", owner=OWNER)
    assert conversation is not None
    assert [m["content"] for m in conversation.messages] == ["m1", "re: m1", "m2", "re: m2"]
    assert conversation.dropped_messages == 2 and conversation.message_count == 4


async def test_it_expires_idle_conversations(store: ConversationStore, settings: Any) -> None:
    settings.CONVERSATION_TTL = 60
    await store.append(Kind.CHAT, "idle", pair("x"), owner=OWNER, model="m", tokens=0)
    with mock.patch("time.time", return_value=10**11), mock.patch("time.monotonic", return_value=10**11):
        assert await store.count(Kind.CHAT) == 0
        total, page = await store.page(Kind.CHAT, owner=OWNER, limit=10, offset=0)
        assert total == 0 and page == []


async def test_it_refreshes_the_ttl_on_each_write(store: ConversationStore, settings: Any) -> None:
    if isinstance(store, RedisStore):
        settings.CONVERSATION_TTL = 100
        await store.append(Kind.CHAT, "ttl", pair("x"), owner=OWNER, model="m", tokens=0)
        settings.CONVERSATION_TTL = 5000
        await store.append(Kind.CHAT, "ttl", pair("y"), owner=OWNER, model="m", tokens=0)
        ttl = await store._redis.ttl(f"contract:conv:chat:{OWNER}/ttl:meta")
        assert 4000 < ttl <= 5000
    else:
        settings.CONVERSATION_TTL = 100
        start = time.monotonic()
        await store.append(Kind.CHAT, "ttl", pair("x"), owner=OWNER, model="m", tokens=0)
        with mock.patch("stores.local.time.monotonic", return_value=start + 50):
            await store.append(Kind.CHAT, "ttl", pair("y"), owner=OWNER, model="m", tokens=0)
        with mock.patch("stores.local.time.monotonic", return_value=start + 120):
            assert await store.get(Kind.CHAT, "ttl", owner=OWNER) is not None
        with mock.patch("stores.local.time.monotonic", return_value=start + 200):
            assert await store.get(Kind.CHAT, "ttl", owner=OWNER) is None


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


OTHER = "k-fedcba9876543210fedcba98"


async def test_it_keeps_each_owners_conversations_apart(store: ConversationStore) -> None:
    await store.append(Kind.CHAT, "same", pair("mine"), owner=OWNER, model="m", tokens=1)
    await store.append(Kind.CHAT, "same", pair("theirs"), owner=OTHER, model="m", tokens=2)
    await store.append(Kind.CHAT, "only-theirs", pair("x"), owner=OTHER, model="m", tokens=0)
    mine = await store.get(Kind.CHAT, "same", owner=OWNER)
    theirs = await store.get(Kind.CHAT, "same", owner=OTHER)
    assert mine is not None and theirs is not None
    assert mine.messages[0]["content"] == "mine" and mine.owner == OWNER and mine.total_tokens == 1
    assert theirs.messages[0]["content"] == "theirs" and theirs.owner == OTHER
    assert await store.get(Kind.CHAT, "only-theirs", owner=OWNER) is None
    total, page = await store.page(Kind.CHAT, owner=OWNER, limit=10, offset=0)
    assert (total, [c.id for c in page]) == (1, ["same"])
    total, page = await store.page(Kind.CHAT, owner=None, limit=10, offset=0)
    assert total == 3
    assert sorted((c.owner, c.id) for c in page) == [(OTHER, "only-theirs"), (OTHER, "same"), (OWNER, "same")]
    assert await store.count(Kind.CHAT) == 3


async def test_it_deletes_and_clears_only_the_owners_own(store: ConversationStore) -> None:
    await store.append(Kind.MEMORY, "a", pair("mine"), owner=OWNER, model="m", tokens=0)
    await store.append(Kind.MEMORY, "a", pair("theirs"), owner=OTHER, model="m", tokens=0)
    await store.append(Kind.MEMORY, "b", pair("theirs"), owner=OTHER, model="m", tokens=0)
    assert await store.delete(Kind.MEMORY, "b", owner=OWNER) is False
    assert await store.delete(Kind.MEMORY, "a", owner=OWNER) is True
    assert await store.get(Kind.MEMORY, "a", owner=OTHER) is not None
    await store.append(Kind.MEMORY, "c", pair("mine"), owner=OWNER, model="m", tokens=0)
    assert await store.clear(Kind.MEMORY, owner=OWNER) == 1
    assert await store.count(Kind.MEMORY) == 2
    total, page = await store.page(Kind.MEMORY, owner=OTHER, limit=10, offset=0)
    assert (total, sorted(c.id for c in page)) == (2, ["a", "b"])


async def test_it_evicts_across_owners_and_forgets_the_evicted(
    store: ConversationStore, settings: Any
) -> None:
    settings.CONVERSATION_MAX = 2
    await store.append(Kind.CHAT, "old", pair("x"), owner=OWNER, model="m", tokens=0)
    await store.append(Kind.CHAT, "mid", pair("x"), owner=OTHER, model="m", tokens=0)
    await store.append(Kind.CHAT, "new", pair("x"), owner=OTHER, model="m", tokens=0)
    assert await store.get(Kind.CHAT, "old", owner=OWNER) is None
    assert await store.page(Kind.CHAT, owner=OWNER, limit=10, offset=0) == (0, [])
    total, _ = await store.page(Kind.CHAT, owner=OTHER, limit=10, offset=0)
    assert total == 2


async def test_it_deletes_one_message_by_its_id(store: ConversationStore) -> None:
    first = {"id": "msg_a", "role": "user", "content": "one", "timestamp": "t"}
    legacy = {"role": "assistant", "content": "no id of its own", "timestamp": "t"}
    await store.append(Kind.CHAT, "c", [first, legacy, *pair("two")], owner=OWNER, model="m", tokens=0)
    assert await store.delete_message(Kind.CHAT, "c", "msg_a", owner=OTHER) is False
    assert await store.delete_message(Kind.CHAT, "c", "msg_a", owner=OWNER) is True
    assert await store.delete_message(Kind.CHAT, "c", "msg_a", owner=OWNER) is False
    assert await store.delete_message(Kind.CHAT, "c", stored_id(legacy), owner=OWNER) is True
    assert await store.delete_message(Kind.CHAT, "missing", "msg_a", owner=OWNER) is False
    conversation = await store.get(Kind.CHAT, "c", owner=OWNER)
    assert conversation is not None
    assert [m["content"] for m in conversation.messages] == ["two", "re: two"]
    assert conversation.message_count == 2


def test_it_derives_the_same_id_for_a_message_without_one() -> None:
    legacy = {"role": "user", "content": "hi", "timestamp": "2026-01-01T00:00:00+00:00"}
    assert stored_id(legacy) == stored_id(dict(legacy)) and stored_id(legacy).startswith("msg_")
    assert stored_id({**legacy, "role": "assistant"}) != stored_id(legacy)
    assert stored_id({**legacy, "id": "msg_own"}) == "msg_own"


async def test_it_keeps_records_per_owner(store: ConversationStore) -> None:
    record = {"response": {"id": "resp_1", "output": [{"text": "é"}]}, "n": 1}
    await store.put_record(Kind.RESPONSE, "resp_1", record, owner=OWNER)
    assert await store.get_records(Kind.RESPONSE, ["resp_1", "nope"], owner=OWNER) == [record, None]
    assert await store.get_records(Kind.RESPONSE, ["resp_1"], owner=OTHER) == [None]
    assert await store.get_records(Kind.CHAT, ["resp_1"], owner=OWNER) == [None]
    assert await store.get_records(Kind.RESPONSE, [], owner=OWNER) == []
    assert await store.delete_record(Kind.RESPONSE, "resp_1", owner=OTHER) is False
    assert await store.delete_record(Kind.RESPONSE, "resp_1", owner=OWNER) is True
    assert await store.delete_record(Kind.RESPONSE, "resp_1", owner=OWNER) is False
    assert await store.get_records(Kind.RESPONSE, ["resp_1"], owner=OWNER) == [None]
    assert await store.count(Kind.RESPONSE) == 0  # records are no conversations


async def test_it_replaces_a_record_and_never_shares_it(store: ConversationStore) -> None:
    record: dict[str, Any] = {"v": 1}
    await store.put_record(Kind.CHAT, "meta", record, owner=OWNER)
    record["v"] = 2  # the caller's later change stays the caller's
    assert await store.get_records(Kind.CHAT, ["meta"], owner=OWNER) == [{"v": 1}]
    await store.put_record(Kind.CHAT, "meta", {"v": 3}, owner=OWNER)
    assert await store.get_records(Kind.CHAT, ["meta"], owner=OWNER) == [{"v": 3}]


async def test_it_evicts_the_least_recently_written_records(store: ConversationStore, settings: Any) -> None:
    settings.CONVERSATION_MAX = 2
    for name in ("a", "b", "a", "c"):
        await store.put_record(Kind.RESPONSE, name, {"name": name}, owner=OWNER)
    found = await store.get_records(Kind.RESPONSE, ["a", "b", "c"], owner=OWNER)
    assert found == [{"name": "a"}, None, {"name": "c"}]


async def test_it_expires_records(store: ConversationStore, settings: Any) -> None:
    settings.CONVERSATION_TTL = 60
    await store.put_record(Kind.RESPONSE, "old", {"x": 1}, owner=OWNER)
    if isinstance(store, RedisStore):
        ttl = await store._redis.ttl(f"contract:record:response:{OWNER}/old")
        assert 0 < ttl <= 60
        return
    with mock.patch("stores.local.time.monotonic", return_value=time.monotonic() + 61):
        assert await store.get_records(Kind.RESPONSE, ["old"], owner=OWNER) == [None]
        assert await store.delete_record(Kind.RESPONSE, "old", owner=OWNER) is False
