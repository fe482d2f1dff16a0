"""Conversations are bounded: by count (least recently used first), by length, and by idle time (an
expired one cannot even be deleted); the per-model statistics are bounded too."""

from __future__ import annotations

from typing import Any
from unittest import mock

from django.test import AsyncClient

from stores import get_store
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
