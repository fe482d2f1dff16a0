"""One contract, two stores (local memory and Redis: a real redis-server, a real three-master Redis
Cluster, and the same two of Valkey 9.1) that behave the same: turns kept in
order, kinds apart, no concurrent append lost, newest-first paging, delete and clear, least recently
written evicted, oldest messages dropped, idle conversations expired (each write refreshing the TTL),
usage counted and values cached."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from unittest import mock

import pytest

from stores import ConversationStore, Kind, reset_store
from stores.base import (
    CallRecord,
    Count,
    RecordWrite,
    TurnWrite,
    fixed_window,
    is_reply,
    message_cost,
    stored_id,
)
from stores.local import LocalStore
from stores.redis_cluster import RedisClusterStore
from stores.redis_store import RedisStore
from tests.conftest import RedisCluster, RedisServer


def pair(text: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": text, "timestamp": "t"},
        {"role": "assistant", "content": f"re: {text}", "timestamp": "t"},
    ]


OWNER = "t-0123456789abcdef01234567"


class StrictClusterStore(RedisClusterStore):
    """Its scripts declare themselves (`#!lua`): a cluster then refuses any key a script reaches in
    another slot than its KEYS' (without the line, only keys on another node are refused: tried on
    Redis 7.0, "Script attempted to access keys that do not hash to the same slot")."""

    script_header = "#!lua\n"


# the servers each Redis store runs on: Redis 7, and Valkey 9.1 (Redis's fork), alone and as a cluster
SERVERS = {
    "redis": "redis_server",
    "cluster": "redis_cluster",
    "valkey": "valkey_server",
    "valkey-cluster": "valkey_cluster",
}


@pytest.fixture(params=["local", *SERVERS])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ConversationStore]:
    if request.param == "local":
        reset_store()
        yield LocalStore()
        return
    server: RedisServer | RedisCluster = request.getfixturevalue(SERVERS[request.param])
    if isinstance(server, RedisCluster):
        redis_store: RedisStore = StrictClusterStore(server.url, prefix="contract:")
    else:
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
    assert len(conversation.messages) == 100
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
        ttl = await store._redis.ttl(store._conversation(Kind.CHAT, OWNER, "ttl") + ":meta")
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


def reply_with_tokens(text: str, tokens: int) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": text, "timestamp": "t"},
        {"role": "assistant", "content": f"re: {text}", "timestamp": "t", "tokens": tokens},
    ]


async def test_it_replaces_the_last_turn_as_if_it_were_the_only_one(store: ConversationStore) -> None:
    await store.append(Kind.CHAT, "r", reply_with_tokens("first", 10), owner=OWNER, model="m", tokens=10)
    await store.append(Kind.CHAT, "r", reply_with_tokens("second", 20), owner=OWNER, model="m", tokens=20)
    replaced = await store.replace_last_turn(
        Kind.CHAT, "r", reply_with_tokens("second, edited", 7), owner=OWNER, model="m2", tokens=7
    )
    assert replaced is not None and replaced.message_count == 4 and replaced.total_tokens == 17
    stored = await store.get(Kind.CHAT, "r", owner=OWNER)
    assert stored is not None
    assert [m["content"] for m in stored.messages] == [
        "first",
        "re: first",
        "second, edited",
        "re: second, edited",
    ]
    assert (stored.total_tokens, stored.model, stored.title) == (17, "m2", "first")
    assert await store.replace_last_turn(Kind.CHAT, "r", pair("x"), owner=OTHER, model="m", tokens=0) is None
    assert await store.get(Kind.CHAT, "r", owner=OTHER) is None


async def test_it_titles_a_conversation_by_its_first_question(store: ConversationStore) -> None:
    await store.append(
        Kind.CHAT,
        "t",
        pair("  How do\\n I   boil an egg?  "),
        owner=OWNER,
        model="m",
        tokens=0,
    )
    await store.append(Kind.CHAT, "t", pair("And a second one?"), owner=OWNER, model="m", tokens=0)
    stored = await store.get(Kind.CHAT, "t", owner=OWNER)
    assert stored is not None and stored.display_title == "How do\\n I boil an egg?"
    _, page = await store.page(Kind.CHAT, owner=OWNER, limit=10, offset=0)
    assert [c.display_title for c in page] == ["How do\\n I boil an egg?"]
    assert page[0].last_message == "re: And a second one?"


async def test_it_retitles_a_conversation_whose_only_turn_was_replaced(store: ConversationStore) -> None:
    await store.append(Kind.CHAT, "e", reply_with_tokens("Waht?", 3), owner=OWNER, model="m", tokens=3)
    await store.replace_last_turn(
        Kind.CHAT, "e", reply_with_tokens("What?", 4), owner=OWNER, model="m", tokens=4
    )
    stored = await store.get(Kind.CHAT, "e", owner=OWNER)
    assert stored is not None and (stored.display_title, stored.total_tokens, stored.message_count) == (
        "What?",
        4,
        2,
    )


def costs(store: ConversationStore) -> Callable[..., int]:
    """What conversations of these messages cost in this store."""

    def cost(*conversations: list[dict[str, Any]]) -> int:
        return sum(store.conversation_cost(c) for c in conversations)

    return cost


async def test_it_counts_what_conversations_cost(store: ConversationStore) -> None:
    cost = costs(store)
    one, two, three = pair("one"), pair("two " * 100), pair("\U0001f600" * 50)
    await store.append(Kind.CHAT, "a", one, owner=OWNER, model="m", tokens=0, quota_key="ip:x")
    await store.append(Kind.CHAT, "a", two, owner=OWNER, model="m", tokens=0, quota_key="ip:x")
    await store.append(Kind.MEMORY, "b", three, owner=OWNER, model="m", tokens=0)
    assert await store.stored_bytes() == cost(one + two, three)
    assert await store.stored_bytes("ip:x") == cost(one + two)
    assert await store.stored_bytes("ip:nobody") == 0
    assert message_cost(three[0]) > 5 * 50  # four bytes a character in CPython, plus its UTF-8 copy


async def test_it_keeps_the_store_under_its_byte_bound_least_recent_first(
    store: ConversationStore, settings: Any
) -> None:
    cost = costs(store)
    settings.STORE_MAX_BYTES = cost(pair("x") * 2) + 2 * cost(pair("x"))
    for name in ("a", "b", "c", "a", "d"):
        kind = Kind.CHAT if name != "c" else Kind.MEMORY
        await store.append(kind, name, pair("x"), owner=OWNER, model="m", tokens=0)
    assert await store.stored_bytes() == settings.STORE_MAX_BYTES
    assert await store.get(Kind.CHAT, "b", owner=OWNER) is None
    assert [await store.count(k) for k in (Kind.CHAT, Kind.MEMORY)] == [2, 1]
    assert (await store.usage())["evictions"] == 1


async def test_it_evicts_a_clients_own_oldest_conversations_over_its_quota(
    store: ConversationStore, settings: Any
) -> None:
    cost = costs(store)
    settings.CLIENT_STORAGE_BYTES = 2 * cost(pair("x"))
    await store.append(
        Kind.CHAT,
        "theirs",
        pair("x"),
        owner=OWNER,
        model="m",
        tokens=0,
        quota_key="ip:other",
    )
    for name in ("m1", "m2", "m3"):
        await store.append(
            Kind.MEMORY,
            name,
            pair("x"),
            owner=OWNER,
            model="m",
            tokens=0,
            quota_key="ip:me",
        )
    assert await store.get(Kind.MEMORY, "m1", owner=OWNER) is None
    assert (
        await store.get(Kind.MEMORY, "m3", owner=OWNER) is not None
        and await store.get(Kind.CHAT, "theirs", owner=OWNER) is not None
    )
    assert await store.stored_bytes("ip:me") == 2 * cost(pair("x"))
    assert await store.stored_bytes() == 3 * cost(pair("x"))


async def test_it_drops_the_oldest_turns_of_a_conversation_that_outgrows_its_cap(
    store: ConversationStore, settings: Any
) -> None:
    cost = costs(store)
    settings.CLIENT_STORAGE_BYTES = cost(pair("x") * 3)
    for n in range(5):
        await store.append(
            Kind.CHAT,
            "big",
            pair(str(n)),
            owner=OWNER,
            model="m",
            tokens=1,
            quota_key="ip:me",
        )
    conversation = await store.get(Kind.CHAT, "big", owner=OWNER)
    assert conversation is not None
    assert [m["content"] for m in conversation.messages[::2]] == ["2", "3", "4"]
    assert conversation.dropped_messages == 4 and conversation.total_tokens == 5
    assert await store.stored_bytes("ip:me") == cost(pair("2") + pair("3") + pair("4"))


async def test_it_always_keeps_the_turn_just_written(store: ConversationStore, settings: Any) -> None:
    cost = costs(store)
    settings.CLIENT_STORAGE_BYTES = 64 * 1024
    huge = pair("y" * 40_000)
    await store.append(Kind.CHAT, "small", pair("x"), owner=OWNER, model="m", tokens=0, quota_key="ip:me")
    result = await store.append(Kind.CHAT, "huge", huge, owner=OWNER, model="m", tokens=0, quota_key="ip:me")
    assert result.message_count == 2 and await store.get(Kind.CHAT, "small", owner=OWNER) is None
    assert await store.stored_bytes("ip:me") == cost(huge)


async def test_it_gives_back_what_deleted_cleared_and_expired_conversations_cost(
    store: ConversationStore, settings: Any
) -> None:
    cost = costs(store)
    for name in ("a", "b", "c"):
        await store.append(
            Kind.MEMORY,
            name,
            pair("x"),
            owner=OWNER,
            model="m",
            tokens=0,
            quota_key="ip:me",
        )
    await store.delete(Kind.MEMORY, "a", owner=OWNER)
    assert await store.stored_bytes() == await store.stored_bytes("ip:me") == 2 * cost(pair("x"))
    await store.clear(Kind.MEMORY, owner=OWNER)
    assert await store.stored_bytes() == await store.stored_bytes("ip:me") == 0
    settings.CONVERSATION_TTL = 60
    await store.append(Kind.CHAT, "idle", pair("x"), owner=OWNER, model="m", tokens=0, quota_key="ip:me")
    with mock.patch("time.time", return_value=10**11), mock.patch("time.monotonic", return_value=10**11):
        assert await store.stored_bytes() == await store.stored_bytes("ip:me") == 0


async def test_it_counts_a_conversation_against_its_latest_writer(store: ConversationStore) -> None:
    cost = costs(store)
    await store.append(
        Kind.CHAT,
        "shared",
        pair("x"),
        owner=OWNER,
        model="m",
        tokens=0,
        quota_key="ip:first",
    )
    await store.append(
        Kind.CHAT,
        "shared",
        pair("y"),
        owner=OWNER,
        model="m",
        tokens=0,
        quota_key="ip:second",
    )
    assert await store.stored_bytes("ip:first") == 0
    assert await store.stored_bytes("ip:second") == await store.stored_bytes() == cost(pair("x") + pair("y"))


async def test_it_tallies_amounts_in_fixed_windows(store: ConversationStore) -> None:
    assert await store.tally("budget:t", 0, 3600) == (0, mock.ANY)
    await asyncio.gather(*[store.tally("budget:t", 7, 3600) for _ in range(20)])
    used, reset = await store.tally("budget:t", 0, 3600)
    assert used == 140 and 1 <= reset <= 3600
    assert (await store.tally("budget:other", 5, 3600))[0] == 5
    with mock.patch("time.time", return_value=time.time() + 3600):
        assert (await store.tally("budget:t", 0, 3600))[0] == 0


async def test_a_window_counter_lives_no_longer_than_its_window(store: ConversationStore) -> None:
    """A counter's window ends it: on Redis, its lifetime is set when the window's first count makes
    it (later counts leave it), by the rate limit's hit and by a tally alike."""
    for _ in range(2):
        await store.hit("rate:t", 60)
        await store.tally("budget:t", 7, 60)
    if isinstance(store, RedisStore):
        for key in ("rate:t", "budget:t"):
            ttl = await store._redis.ttl(store._counter(key, fixed_window(60)[0]))
            assert 0 < ttl <= 61, (key, ttl)
    with mock.patch("time.time", return_value=time.time() + 60):
        assert (await store.hit("rate:t", 60))[0] == 1
        assert (await store.tally("budget:t", 0, 60))[0] == 0


async def test_a_capped_count_adds_nothing_past_its_cap_and_a_settled_one_counts_in_its_window(
    store: ConversationStore,
) -> None:
    """A budget's reservation (a Count with a cap) is added only if the total stays within the cap,
    atomically; what is given back (below 0) and a settlement in the window it was held in (`slot`)
    count there, whatever the current window."""

    async def count(*counts: Count) -> list[int]:
        return [total for total, _ in (await store.admit(list(counts))).counts]

    assert await count(Count("budget:c", 60, 3600, cap=100)) == [60]
    assert await count(Count("budget:c", 50, 3600, cap=100)) == [110]  # refused: nothing added
    assert await count(Count("budget:c", 0, 3600)) == [60]
    assert await count(Count("budget:c", 40, 3600, cap=100)) == [100]  # fits exactly
    assert await count(Count("budget:c", -30, 3600)) == [70]
    assert await count(Count("budget:new", 500, 60, cap=100), Count("budget:new", 0, 60)) == [500, 0]
    if isinstance(store, RedisStore):  # a refused first count leaves no key behind
        assert not await store._redis.exists(store._counter("budget:new", fixed_window(60)[0]))
    held = fixed_window(3600)[0]
    with mock.patch("time.time", return_value=time.time() + 3600):  # the next window: settled in its own
        await store.commit(call=CallRecord("m", charges=(Count("budget:c", -20, 3600, slot=held),)))
        assert await count(Count("budget:c", 0, 3600)) == [0]
    assert await count(Count("budget:c", 0, 3600)) == [50]
    await asyncio.gather(*(count(Count("budget:race", 30, 3600, cap=100)) for _ in range(10)))
    assert await count(Count("budget:race", 0, 3600)) == [90]  # three fit, at once or not


async def test_admission_says_whether_a_turn_id_was_stored(store: ConversationStore) -> None:
    """A client retrying a turn: admission tells it was stored (its owner's, within TURN_ID_TTL), in the
    same round trip as the conversation's read."""
    assert not (await store.admit([], turn=(OWNER, "t-1"))).turn_seen
    await store.append(Kind.CHAT, "c", pair("hi"), owner=OWNER, model="m", tokens=0, turn_id="t-1")
    seen = await store.admit(
        [Count("rate:x", 1, 60)], conversation=(Kind.CHAT, "c", OWNER), turn=(OWNER, "t-1")
    )
    assert seen.turn_seen and seen.conversation is not None and seen.counts[0][0] == 1
    assert not (await store.admit([], conversation=(Kind.CHAT, "c", OWNER), turn=(OWNER, "t-2"))).turn_seen
    assert not (await store.admit([], conversation=(Kind.CHAT, "c", OWNER))).turn_seen


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
        ttl = await store._redis.ttl(store._record(Kind.RESPONSE, OWNER, "old"))
        assert 0 < ttl <= 60
        return
    with mock.patch("stores.local.time.monotonic", return_value=time.monotonic() + 61):
        assert await store.get_records(Kind.RESPONSE, ["old"], owner=OWNER) == [None]
        assert await store.delete_record(Kind.RESPONSE, "old", owner=OWNER) is False


async def test_it_stores_a_turn_id_once(store: ConversationStore) -> None:
    first = await store.append(
        Kind.CHAT, "t", pair("once"), owner=OWNER, model="m", tokens=3, turn_id="tid-1"
    )
    again = await store.append(
        Kind.CHAT, "t", pair("once"), owner=OWNER, model="m", tokens=3, turn_id="tid-1"
    )
    assert (first.replayed, again.replayed) == (False, True)
    assert (again.message_count, again.total_tokens) == (2, 3)
    other = await store.append(
        Kind.CHAT, "t", pair("next"), owner=OWNER, model="m", tokens=3, turn_id="tid-2"
    )
    assert (other.message_count, other.replayed) == (4, False)
    replaced = await store.replace_last_turn(
        Kind.CHAT, "t", pair("edit"), owner=OWNER, model="m", tokens=1, turn_id="tid-3"
    )
    assert replaced is not None and replaced.message_count == 4
    twice = await store.replace_last_turn(
        Kind.CHAT, "t", pair("edit"), owner=OWNER, model="m", tokens=1, turn_id="tid-3"
    )
    assert twice is not None and twice.replayed
    conversation = await store.get(Kind.CHAT, "t", owner=OWNER)
    assert conversation is not None
    assert [m["content"] for m in conversation.messages[::2]] == ["once", "edit"]
    assert conversation.total_tokens == 7  # (these replies carry no tokens to take off)


async def test_it_admits_and_commits_in_one_step_each(store: ConversationStore) -> None:
    await store.append(Kind.CHAT, "a", pair("hello"), owner=OWNER, model="m", tokens=2)
    await store.put_record(Kind.RESPONSE, "r1", {"v": 1}, owner=OWNER)
    admission = await store.admit(
        [Count("rate:x", 1, 60), Count("budget:x", 0, 3600)],
        conversation=(Kind.CHAT, "a", OWNER),
        records=(Kind.RESPONSE, ["r1", "missing"], OWNER),
    )
    assert [total for total, _ in admission.counts] == [1, 0]
    assert admission.conversation is not None and admission.conversation.message_count == 2
    assert admission.records == [{"v": 1}, None]
    assert (await store.admit([Count("rate:x", 1, 60)])).counts[0][0] == 2
    assert (await store.admit([], conversation=(Kind.CHAT, "a", OTHER))).conversation is None

    written = await store.commit(
        turn=TurnWrite(Kind.CHAT, "a", pair("more"), owner=OWNER, model="m2", tokens=5),
        record=RecordWrite(Kind.RESPONSE, "r2", {"v": 2}, owner=OWNER),
        call=CallRecord("m2", prompt_tokens=3, completion_tokens=2, charges=(Count("budget:x", 5, 3600),)),
    )
    assert written is not None and (written.message_count, written.total_tokens) == (4, 7)
    assert await store.get_records(Kind.RESPONSE, ["r2"], owner=OWNER) == [{"v": 2}]
    assert (await store.tally("budget:x", 0, 3600))[0] == 5
    assert (await store.usage())["by_model"]["m2"]["prompt_tokens"] == 3
    # no conversation to replace a turn of: the rest is written all the same
    missing = await store.commit(
        turn=TurnWrite(Kind.CHAT, "gone", pair("x"), owner=OWNER, model="m", tokens=1, replace_last=True),
        call=CallRecord("m3", prompt_tokens=1),
    )
    assert missing is None and "m3" in (await store.usage())["by_model"]


THIRD = "t-00000000000000000000000a"


def apart(store: ConversationStore, *owners: str) -> None:
    """On a cluster, these owners' conversations are kept in different slots (so a test across them
    crosses slots)."""
    if isinstance(store, RedisClusterStore):
        slots = {store._redis.keyslot(store._conversation(Kind.CHAT, o, "x") + ":meta") for o in owners}
        assert len(slots) == len(owners)


async def test_it_keeps_the_byte_bound_across_owners(store: ConversationStore, settings: Any) -> None:
    apart(store, OWNER, OTHER, THIRD)
    cost = costs(store)
    settings.STORE_MAX_BYTES = 3 * cost(pair("x"))
    for name, owner in (("a", OWNER), ("b", OTHER), ("c", THIRD), ("d", OWNER)):
        await store.append(
            Kind.CHAT, name, pair("x"), owner=owner, model="m", tokens=0, quota_key="ip:" + name
        )
    assert await store.get(Kind.CHAT, "a", owner=OWNER) is None
    assert await store.stored_bytes() == 3 * cost(pair("x")) and await store.stored_bytes("ip:a") == 0
    total, page = await store.page(Kind.CHAT, owner=OWNER, limit=10, offset=0)
    assert (total, [c.id for c in page]) == (1, ["d"])
    assert [await store.get(Kind.CHAT, n, owner=o) is not None for n, o in (("b", OTHER), ("c", THIRD))] == [
        True,
        True,
    ]
    assert await store.count(Kind.CHAT) == 3 and (await store.usage())["evictions"] == 1


async def test_it_keeps_a_clients_quota_across_owners(store: ConversationStore, settings: Any) -> None:
    apart(store, OWNER, OTHER)
    cost = costs(store)
    settings.CLIENT_STORAGE_BYTES = 2 * cost(pair("x"))
    for name, owner in (("m1", OWNER), ("m2", OTHER), ("m3", OWNER)):
        await store.append(Kind.CHAT, name, pair("x"), owner=owner, model="m", tokens=0, quota_key="ip:me")
    assert await store.get(Kind.CHAT, "m1", owner=OWNER) is None
    assert await store.get(Kind.CHAT, "m2", owner=OTHER) is not None
    total, page = await store.page(Kind.CHAT, owner=OWNER, limit=10, offset=0)
    assert (total, [c.id for c in page]) == (1, ["m3"])
    assert await store.stored_bytes("ip:me") == await store.stored_bytes() == 2 * cost(pair("x"))
    assert await store.count(Kind.CHAT) == 2 and (await store.usage())["evictions"] == 1


async def test_it_moves_a_conversation_to_its_latest_writers_quota_and_back(store: ConversationStore) -> None:
    cost = costs(store)
    for quota in ("ip:first", "ip:second", "ip:first"):
        await store.append(Kind.CHAT, "moving", pair("x"), owner=OWNER, model="m", tokens=0, quota_key=quota)
    size = cost(pair("x") * 3)
    assert [await store.stored_bytes(q) for q in ("ip:first", "ip:second")] == [size, 0]
    await store.delete_message(Kind.CHAT, "moving", stored_id(pair("x")[0]), owner=OWNER)
    smaller = await store.stored_bytes("ip:first")
    assert smaller < size and await store.stored_bytes() == smaller
    await store.delete(Kind.CHAT, "moving", owner=OWNER)
    assert [await store.stored_bytes(q) for q in (None, "ip:first", "ip:second")] == [0, 0, 0]


async def test_it_counts_concurrent_appends_to_one_conversation_exactly(store: ConversationStore) -> None:
    await asyncio.gather(
        *[
            store.append(
                Kind.CHAT, "busy", pair(f"q{n:02d}"), owner=OWNER, model="m", tokens=1, quota_key="ip:me"
            )
            for n in range(40)
        ]
    )
    conversation = await store.get(Kind.CHAT, "busy", owner=OWNER)
    assert conversation is not None and conversation.message_count == 80
    size = store.conversation_cost(conversation.messages)
    assert await store.stored_bytes() == await store.stored_bytes("ip:me") == size


async def test_it_counts_a_turn_sent_twice_once(store: ConversationStore) -> None:
    for _ in range(2):
        await store.append(
            Kind.CHAT, "t", pair("x"), owner=OWNER, model="m", tokens=1, quota_key="ip:me", turn_id="t1"
        )
    cost = store.conversation_cost(pair("x"))
    assert await store.stored_bytes() == await store.stored_bytes("ip:me") == cost


def record_of(n: int) -> dict[str, Any]:
    """A record whose cost is between a third and a half of 64 KiB on every store (its JSON is 24 kB:
    the local store counts that, Redis a quarter more for its allocator, both plus an overhead)."""
    return {"n": n, "text": "x" * (24_000 - 20)}


async def kept(store: ConversationStore, owner: str, names: list[str]) -> list[str]:
    found = await store.get_records(Kind.RESPONSE, names, owner=owner)
    return [name for name, record in zip(names, found, strict=True) if record is not None]


async def test_a_clients_records_beyond_its_quota_go_its_own_oldest_first(
    store: ConversationStore, settings: Any
) -> None:
    settings.CLIENT_STORAGE_BYTES = 64 * 1024
    for name in ("a1", "a2", "a3"):
        await store.put_record(Kind.RESPONSE, name, record_of(1), owner=OWNER, quota_key="ip:a")
    await store.put_record(Kind.RESPONSE, "b1", record_of(2), owner="t-other", quota_key="ip:b")
    assert await kept(store, OWNER, ["a1", "a2", "a3"]) == ["a2", "a3"]
    assert (await store.usage())["evictions"] == 1  # counted as a conversation's eviction is
    await store.put_record(Kind.RESPONSE, "a4", record_of(4), owner=OWNER, quota_key="ip:a")
    assert await kept(store, OWNER, ["a2", "a3", "a4"]) == ["a3", "a4"]
    assert await kept(store, "t-other", ["b1"]) == ["b1"]  # another client's record stays
    # a deleted record gives its bytes back: the next one pushes nothing out
    assert await store.delete_record(Kind.RESPONSE, "a3", owner=OWNER)
    await store.put_record(Kind.RESPONSE, "a5", record_of(5), owner=OWNER, quota_key="ip:a")
    assert await kept(store, OWNER, ["a4", "a5"]) == ["a4", "a5"]
    # rewriting a record counts it once, and makes it the newest
    await store.put_record(Kind.RESPONSE, "a4", record_of(6), owner=OWNER, quota_key="ip:a")
    await store.put_record(Kind.RESPONSE, "a6", record_of(7), owner=OWNER, quota_key="ip:a")
    assert await kept(store, OWNER, ["a4", "a5", "a6"]) == ["a4", "a6"]


async def test_a_record_from_a_writer_whose_clock_is_behind_still_keeps_its_quota(
    store: ConversationStore, settings: Any
) -> None:
    """Two processes' clocks disagree: a record written with an earlier time than the client's others
    still makes its own oldest others go (it is never its own victim)."""
    settings.CLIENT_STORAGE_BYTES = 64 * 1024
    now = time.time()
    for name in ("a1", "a2"):
        await store.put_record(Kind.RESPONSE, name, record_of(1), owner=OWNER, quota_key="ip:a")
    with mock.patch("time.time", return_value=now - 10):
        await store.put_record(Kind.RESPONSE, "a3", record_of(3), owner=OWNER, quota_key="ip:a")
    left = await kept(store, OWNER, ["a1", "a2", "a3"])
    assert len(left) == 2 and "a3" in left, left


async def test_expired_records_no_longer_count_against_a_quota(
    store: ConversationStore, settings: Any
) -> None:
    settings.CLIENT_STORAGE_BYTES = 64 * 1024
    settings.CONVERSATION_TTL = 60
    for name in ("a1", "a2"):
        await store.put_record(Kind.RESPONSE, name, record_of(1), owner=OWNER, quota_key="ip:a")
    later = time.time() + 120
    with mock.patch("time.time", return_value=later), mock.patch("time.monotonic", return_value=later):
        for name in ("a3", "a4"):
            await store.put_record(Kind.RESPONSE, name, record_of(2), owner=OWNER, quota_key="ip:a")
        if isinstance(store, RedisStore):  # what Redis has let expire by now, as the clock says
            await store._redis.delete(*(store._record(Kind.RESPONSE, OWNER, n) for n in ("a1", "a2")))
        assert await kept(store, OWNER, ["a1", "a2", "a3", "a4"]) == ["a3", "a4"]


async def test_records_keep_to_the_room_the_conversations_leave(
    store: ConversationStore, settings: Any
) -> None:
    """Records and conversations share STORE_MAX_BYTES: a record written when they fill it pushes out the
    oldest records of its kind (anyone's), never a conversation, never itself."""
    settings.STORE_MAX_BYTES = 1024 * 1024
    big = [{"role": "user", "content": "y" * 600_000, "timestamp": "t"}]
    await store.append(Kind.CHAT, "big", big, owner=OWNER, model="m", tokens=0)
    names = [f"r{n}" for n in range(8)]
    for n, name in enumerate(names):
        await store.put_record(Kind.RESPONSE, name, {"text": "z" * 100_000, "n": n}, owner=OWNER)
    left = await kept(store, OWNER, names)
    assert 1 <= len(left) < 5 and left == names[-len(left) :], left  # the newest, in order
    assert await store.get(Kind.CHAT, "big", owner=OWNER) is not None


async def test_a_conversation_written_makes_room_for_the_records_kept(
    store: ConversationStore, settings: Any
) -> None:
    """Records give way only to records: when they and the conversations fill STORE_MAX_BYTES, a
    conversation's write pushes out the oldest conversations, and every record stays."""
    settings.STORE_MAX_BYTES = 1024 * 1024
    records = [f"r{n}" for n in range(3)]
    for name in records:
        await store.put_record(Kind.RESPONSE, name, {"text": "z" * 200_000}, owner=OWNER)
    names = [f"c{n}" for n in range(3)]
    for name in names:
        turn = [{"role": "user", "content": "y" * 200_000, "timestamp": "t"}]
        await store.append(Kind.CHAT, name, turn, owner=OWNER, model="m", tokens=0)
    left = [n for n in names if await store.get(Kind.CHAT, n, owner=OWNER) is not None]
    assert 1 <= len(left) < 3 and left == names[-len(left) :], left
    assert await kept(store, OWNER, records) == records


async def test_expired_records_leave_the_conversations_their_room(
    store: ConversationStore, settings: Any
) -> None:
    settings.STORE_MAX_BYTES = 1024 * 1024
    settings.CONVERSATION_TTL = 60
    for n in range(3):
        await store.put_record(Kind.RESPONSE, f"r{n}", {"text": "z" * 200_000}, owner=OWNER)
    later = time.time() + 120
    names = [f"c{n}" for n in range(3)]
    with mock.patch("time.time", return_value=later), mock.patch("time.monotonic", return_value=later):
        for name in names:
            turn = [{"role": "user", "content": "y" * 200_000, "timestamp": "t"}]
            await store.append(Kind.CHAT, name, turn, owner=OWNER, model="m", tokens=0)
        assert [n for n in names if await store.get(Kind.CHAT, n, owner=OWNER) is not None] == names


def said(role: str, text: str, item_id: str | None = None) -> dict[str, Any]:
    message = {"role": role, "content": text, "timestamp": "t"}
    if item_id:
        message["id"] = item_id
    return message


async def texts(store: ConversationStore, conversation_id: str) -> list[str]:
    conversation = await store.get(Kind.CHAT, conversation_id, owner=OWNER)
    assert conversation is not None
    return [m["content"] for m in conversation.messages]


async def test_a_last_turn_of_many_messages_is_replaced_whole(store: ConversationStore) -> None:
    """A question and five replies (items added through /v1, function calls and their outputs) are one
    turn: Redis looked for its question among the last four messages only, and appended (review)."""
    await store.append(
        Kind.CHAT, "r", [said("user", "q1"), said("assistant", "a1")], owner=OWNER, model="m", tokens=0
    )
    last = [said("user", "q2"), *(said("assistant", f"a2.{n}") for n in range(5))]
    await store.append(Kind.CHAT, "r", last, owner=OWNER, model="m", tokens=0)
    new = [said("user", "q2 again"), said("assistant", "new")]
    replaced = await store.replace_last_turn(Kind.CHAT, "r", new, owner=OWNER, model="m", tokens=0)
    assert replaced is not None and replaced.message_count == 4
    assert await texts(store, "r") == ["q1", "a1", "q2 again", "new"]


async def test_a_replaced_turn_keeps_the_conversation_in_its_bounds(
    store: ConversationStore, settings: Any
) -> None:
    settings.CONVERSATION_MAX_MESSAGES = 4
    first = [said("user", "u1"), said("assistant", "a1"), said("assistant", "a1b"), said("user", "u2")]
    await store.append(Kind.CHAT, "cap", first, owner=OWNER, model="m", tokens=0)
    new = [said("user", "u2'"), said("assistant", "a2'")]
    replaced = await store.replace_last_turn(Kind.CHAT, "cap", new, owner=OWNER, model="m", tokens=0)
    assert replaced is not None and replaced.message_count == 2
    assert await texts(store, "cap") == ["u2'", "a2'"]


async def test_trimming_drops_whole_turns_of_any_length(store: ConversationStore, settings: Any) -> None:
    """A turn of three messages (text and a function call): Redis dropped two at a time and left the
    function call first (review)."""
    settings.CONVERSATION_MAX_MESSAGES = 4
    call = {"type": "function_call", "role": "assistant", "content": "", "call_id": "c1", "name": "f"}
    await store.append(
        Kind.CHAT, "o", [said("user", "u1"), said("assistant", "a1"), call], owner=OWNER, model="m", tokens=0
    )
    written = await store.append(
        Kind.CHAT, "o", [said("user", "u2"), said("assistant", "a2")], owner=OWNER, model="m", tokens=0
    )
    assert await texts(store, "o") == ["u2", "a2"]
    conversation = await store.get(Kind.CHAT, "o", owner=OWNER)
    assert conversation is not None and (conversation.dropped_messages, written.message_count) == (3, 2)


async def test_deleting_an_id_held_twice_deletes_both(store: ConversationStore) -> None:
    """Stored before ids were checked: Redis deleted one message a call, the local store both (review)."""
    both = [said("user", "one", "dup"), said("assistant", "two", "dup"), said("user", "three", "x")]
    await store.append(Kind.CHAT, "c", both, owner=OWNER, model="m", tokens=0)
    assert await store.delete_message(Kind.CHAT, "c", "dup", owner=OWNER) is True
    assert await texts(store, "c") == ["three"]
    assert await store.delete_message(Kind.CHAT, "c", "dup", owner=OWNER) is False


async def test_deleting_a_message_leaves_the_conversation_where_it_was(
    store: ConversationStore, settings: Any
) -> None:
    """The local store made it the most recent without renewing its TTL: listed and counted after it
    expired (review)."""
    settings.CONVERSATION_TTL = 2
    await store.append(
        Kind.CHAT,
        "older",
        [said("user", "a", "m1"), said("assistant", "b", "m2")],
        owner=OWNER,
        model="m",
        tokens=0,
    )
    await asyncio.sleep(1.2)
    await store.append(
        Kind.CHAT, "newer", [said("user", "c"), said("assistant", "d")], owner=OWNER, model="m", tokens=0
    )
    assert await store.delete_message(Kind.CHAT, "older", "m2", owner=OWNER) is True
    _, page = await store.page(Kind.CHAT, owner=OWNER, limit=10, offset=0)
    assert [c.id for c in page] == ["newer", "older"]
    await asyncio.sleep(1.1)
    total, page = await store.page(Kind.CHAT, owner=OWNER, limit=10, offset=0)
    assert await store.get(Kind.CHAT, "older", owner=OWNER) is None
    assert (total, [c.id for c in page], await store.count(Kind.CHAT)) == (1, ["newer"], 1)


async def test_a_replaced_turn_keeps_the_conversation_within_its_clients_quota(
    store: ConversationStore, settings: Any
) -> None:
    """A replace carries no quota key: the cluster trimmed a replaced conversation to STORE_MAX_BYTES
    only, leaving it over its client's quota (review)."""
    cost = lambda messages: store.conversation_cost(messages)  # noqa: E731
    settings.CLIENT_STORAGE_BYTES = cost(pair("0" + "x" * 4_000) * 3) + 1_000
    for n in range(3):
        await store.append(
            Kind.CHAT, "big", pair(f"{n}" + "x" * 4_000), owner=OWNER, model="m", tokens=0, quota_key="ip:me"
        )
    assert await store.stored_bytes("ip:me") < settings.CLIENT_STORAGE_BYTES
    # the last turn replaced by a longer one: the whole is now over the quota
    longer = pair("2" + "y" * 7_000)
    assert cost(pair("0" + "x" * 4_000) * 2 + longer) > settings.CLIENT_STORAGE_BYTES
    assert cost(pair("0" + "x" * 4_000) + longer) < settings.CLIENT_STORAGE_BYTES
    await store.replace_last_turn(Kind.CHAT, "big", longer, owner=OWNER, model="m", tokens=0)
    conversation = await store.get(Kind.CHAT, "big", owner=OWNER)
    assert conversation is not None
    size = store.conversation_cost(conversation.messages)
    # the figures say what is stored ...
    assert await store.stored_bytes() == await store.stored_bytes("ip:me") == size
    # ... and the conversation was trimmed (its oldest turn) to keep within its client's quota
    assert [m["content"][0] for m in conversation.messages[::2]] == ["1", "2"]
    assert size <= settings.CLIENT_STORAGE_BYTES


async def test_trimming_never_leaves_a_function_output_first(store: ConversationStore, settings: Any) -> None:
    """A function's output (role 'tool') was left first, its call gone (review)."""
    settings.CONVERSATION_MAX_MESSAGES = 4
    call = {
        "id": "fc_1",
        "type": "function_call",
        "role": "assistant",
        "content": "",
        "call_id": "c1",
        "name": "f",
        "arguments": "{}",
        "timestamp": "t",
    }
    output = {
        "id": "fco_1",
        "type": "function_call_output",
        "role": "tool",
        "content": "sunny",
        "call_id": "c1",
        "timestamp": "t",
    }
    first = [
        {"role": "user", "content": "u1", "timestamp": "t"},
        call,
        output,
        {"role": "assistant", "content": "a1", "timestamp": "t"},
    ]
    await store.append(Kind.CHAT, "tools", first, owner=OWNER, model="m", tokens=0)
    await store.append(Kind.CHAT, "tools", pair("u2"), owner=OWNER, model="m", tokens=0)
    conversation = await store.get(Kind.CHAT, "tools", owner=OWNER)
    assert conversation is not None
    assert not is_reply(conversation.messages[0]), conversation.messages[0]
