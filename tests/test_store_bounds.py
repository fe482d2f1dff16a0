"""Conversations are bounded: by count and bytes (least recently used first), per client, by length, and
by idle time."""

from __future__ import annotations

import statistics
import time
from typing import Any
from unittest import mock

from django.test import AsyncClient

from gateway.turns import turn
from stores import Kind, get_store
from stores.base import MAX_MODELS_TRACKED


async def echo(client: AsyncClient, conversation_id: str, text: str = "hi") -> Any:
    response = await client.post(
        "/memory-chat/message",
        {"message": text, "conversation_id": conversation_id},
        content_type="application/json",
    )
    assert response.status_code == 200
    return response.json()


async def test_it_evicts_the_least_recently_used_conversation(client: AsyncClient, settings: Any) -> None:
    settings.CONVERSATION_MAX = 3
    for name in ("a", "b", "c"):
        await echo(client, name)
    await echo(client, "a")  # a is now the most recent
    await echo(client, "d")
    ids = [c["id"] for c in (await client.get("/memory-chat/conversations")).json()["conversations"]]
    assert ids == ["d", "a", "c"]
    assert (await client.get("/memory-chat/conversations/b")).status_code == 404
    assert (await client.get("/api/hf/status")).json()["usage"]["evictions"] == 1


async def test_it_drops_the_oldest_messages_and_says_how_many(client: AsyncClient, settings: Any) -> None:
    settings.CONVERSATION_MAX_MESSAGES = 4
    for n in range(3):
        await echo(client, "long", f"m{n}")
    conversation = (await client.get("/memory-chat/conversations/long")).json()["conversation"]
    assert [m["content"] for m in conversation["messages"][::2]] == ["m1", "m2"]
    assert conversation["dropped_messages"] == 2
    assert conversation["messages"][0]["role"] == "user"


async def test_it_forgets_an_idle_conversation_after_the_ttl(client: AsyncClient, settings: Any) -> None:
    settings.CONVERSATION_TTL = 60
    await echo(client, "idle")
    with mock.patch("stores.local.time.monotonic", return_value=10**9):
        assert (await client.get("/memory-chat/conversations/idle")).status_code == 404
        assert (await client.get("/memory-chat/conversations")).json()["total"] == 0


async def test_it_pages_conversations_newest_first(client: AsyncClient) -> None:
    for n in range(5):
        await echo(client, f"p{n}")
    page = (await client.get("/memory-chat/conversations?limit=2&offset=1")).json()
    assert page["total"] == 5 and page["total_conversations"] == 5
    assert [c["id"] for c in page["conversations"]] == ["p3", "p2"]
    assert (page["limit"], page["offset"]) == (2, 1)


async def test_it_keeps_chat_and_memory_conversations_apart(client: AsyncClient) -> None:
    await echo(client, "shared-id")
    assert (await client.get("/chat/conversations/shared-id")).status_code == 404
    assert (await client.get("/chat/conversations")).json()["total"] == 0


async def test_it_clears_all_memory_conversations(client: AsyncClient) -> None:
    for n in range(3):
        await echo(client, f"c{n}")
    response = await client.delete("/memory-chat/conversations")
    assert response.json() == {
        "status": "success",
        "message": "Cleared 3 conversations from memory",
        "remaining_conversations": 0,
    }
    assert (await client.get("/memory-chat/conversations")).json()["total"] == 0


async def test_it_keeps_a_clients_storage_under_its_quota_evicting_its_own_oldest(
    client: AsyncClient, settings: Any
) -> None:
    settings.TRUSTED_PROXY_HOPS = 1
    settings.CLIENT_STORAGE_BYTES = 256 * 1024
    other = {"X-Forwarded-For": "203.0.113.2"}
    kept = await client.post(
        "/memory-chat/message",
        {"message": "theirs", "conversation_id": "theirs"},
        "application/json",
        headers=other,
    )
    assert kept.status_code == 200
    for n in range(12):
        response = await client.post(
            "/memory-chat/message",
            {"message": "x" * 20_000, "conversation_id": f"mine-{n}"},
            content_type="application/json",
            headers={"X-Forwarded-For": "203.0.113.1"},
        )
        assert response.status_code == 200
    listed = [c["id"] for c in (await client.get("/memory-chat/conversations")).json()["conversations"]]
    assert listed[0] == "mine-11" and "theirs" in listed and "mine-0" not in listed
    mine = [name for name in listed if name.startswith("mine-")]
    assert mine == [f"mine-{n}" for n in range(11, 11 - len(mine), -1)]  # the newest survive
    assert 40_000 * len(mine) <= settings.CLIENT_STORAGE_BYTES
    assert (await client.get("/api/hf/status")).json()["usage"]["evictions"] == 12 - len(mine)


async def test_it_appends_to_a_full_conversation_without_copying_it(settings: Any) -> None:
    """Before: the local store pickled the whole conversation on every turn, 70 ms (median) for
    200 messages of 32,000 emoji. Now an append touches only the new messages (and the dropped ones)."""
    settings.CLIENT_STORAGE_BYTES = settings.STORE_MAX_BYTES
    store = get_store()
    text = "\U0001f600" * 32_000
    for _ in range(101):
        await store.append(
            Kind.MEMORY,
            "full",
            turn(text, text, model="m"),
            owner="anonymous",
            model="m",
            tokens=0,
            quota_key="me",
        )
    timings = []
    for _ in range(20):
        messages = turn(text, text, model="m")
        started = time.perf_counter()
        result = await store.append(
            Kind.MEMORY, "full", messages, owner="anonymous", model="m", tokens=0, quota_key="me"
        )
        timings.append(time.perf_counter() - started)
    assert result.message_count == settings.CONVERSATION_MAX_MESSAGES == 200
    print(f"\nappend to a full conversation: median {statistics.median(timings) * 1000:.2f} ms")
    assert statistics.median(timings) < 0.005


async def test_it_deletes_nothing_that_has_expired(client: AsyncClient) -> None:
    await echo(client, "old", "x")
    with mock.patch("stores.local.time.monotonic", return_value=10**12):
        assert (await client.delete("/memory-chat/conversations/old")).status_code == 404


async def test_it_bounds_the_model_statistics() -> None:
    store = get_store()
    for n in range(MAX_MODELS_TRACKED + 50):
        await store.record_call(
            f"junk/{n}", prompt_tokens=1, completion_tokens=1, error="upstream_bad_request"
        )
    usage = await store.usage()
    assert len(usage["by_model"]) == MAX_MODELS_TRACKED + 1
    assert usage["by_model"]["other"]["requests"] == 50


async def test_it_bounds_stored_responses_by_bytes_too(settings: Any) -> None:
    from stores.local import LocalStore

    settings.STORE_MAX_BYTES = 1024 * 1024
    store = LocalStore()
    big = {"items": [{"role": "user", "content": "x" * 300_000}]}
    for n in range(5):
        await store.put_record(Kind.RESPONSE, f"r{n}", big, owner="anonymous")
    found = await store.get_records(Kind.RESPONSE, [f"r{n}" for n in range(5)], owner="anonymous")
    assert [record is not None for record in found] == [False, False, True, True, True]
    assert store._records[Kind.RESPONSE].bytes <= settings.STORE_MAX_BYTES
    assert (await store.usage())["evictions"] == 2
    await store.delete_record(Kind.RESPONSE, "r4", owner="anonymous")
    await store.put_record(Kind.RESPONSE, "r4", {"small": True}, owner="anonymous")
    assert store._records[Kind.RESPONSE].bytes < 700_000
    # records and conversations share STORE_MAX_BYTES: a conversation written now pushes out older ones
    for n in range(3):
        await store.append(
            Kind.CHAT, f"c{n}", [{"role": "user", "content": "y" * 200_000}], owner="a", model="m", tokens=0
        )
    assert await store.count(Kind.CHAT) < 3
    assert await store.stored_bytes() + store._record_bytes() <= settings.STORE_MAX_BYTES
