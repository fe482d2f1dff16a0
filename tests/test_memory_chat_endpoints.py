"""/memory-chat/*: the echo chat. It never calls the upstream, keeps its conversations apart from /chat's
(even under the same id), and can list, show, delete and clear them; its info and health.

In-process through the NinjaAPI, and one live smoke test over real HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from django.test import AsyncClient

from tests.answers import assert_conversation_not_found, assert_iso, call, live_ok, ok, own_id
from tests.fake_upstream import FakeUpstream


async def send_memory(client: AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    return await ok(client, "POST", "/memory-chat/message", json_body=payload)


async def send_chat(client: AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    return await ok(client, "POST", "/chat/message", json_body=payload)


def test_it_echoes_in_memory_chat_without_the_upstream(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    """The live smoke test of /memory-chat."""
    first = live_ok(
        http, "POST", "/memory-chat/message", json={"message": "Test message", "model": "openai/gpt-4o-mini"}
    )
    assert first["response"] == "Echo from memory chat: Test message"
    assert first["status"] == "success"
    assert first["model"] == "openai/gpt-4o-mini"
    assert first["message_count"] == 2
    assert_iso(first["timestamp"])
    uuid.UUID(first["conversation_id"])

    second = live_ok(
        http,
        "POST",
        "/memory-chat/message",
        json={"message": "again", "conversation_id": first["conversation_id"]},
    )
    assert second["conversation_id"] == first["conversation_id"]
    assert second["response"] == "Echo from memory chat: again"
    assert second["message_count"] == 4
    assert fake_upstream.requests == []


async def test_it_describes_the_memory_chat_service(client: AsyncClient) -> None:
    body = await ok(client, "GET", "/memory-chat/")
    assert body["service"] == "memory-chat"
    assert isinstance(body["status"], str)
    assert isinstance(body["description"], str)
    assert isinstance(body["endpoints"], dict) and body["endpoints"]


async def test_it_reports_memory_chat_health(client: AsyncClient) -> None:
    body = await ok(client, "GET", "/memory-chat/health")
    assert body["status"] == "healthy"
    assert body["service"] == "memory-chat"
    assert isinstance(body["active_conversations"], int)
    assert body["memory_usage"] == "in-memory only"
    assert body["file_dependencies"] == "none"
    assert_iso(body["timestamp"])


async def test_it_lists_and_shows_a_memory_conversation(client: AsyncClient) -> None:
    conversation_id = own_id("memory")
    await send_memory(client, {"message": "remember me", "conversation_id": conversation_id})

    listing = await ok(client, "GET", "/memory-chat/conversations")
    assert listing["status"] == "success"
    assert listing["total_conversations"] >= 1
    mine = [c for c in listing["conversations"] if c["id"] == conversation_id]
    assert len(mine) == 1
    assert mine[0]["message_count"] == 2
    assert mine[0]["last_message"] == "Echo from memory chat: remember me"

    detail = await ok(client, "GET", f"/memory-chat/conversations/{conversation_id}")
    assert detail["status"] == "success"
    conversation = detail["conversation"]
    assert conversation["id"] == conversation_id
    assert [m["content"] for m in conversation["messages"]] == [
        "remember me",
        "Echo from memory chat: remember me",
    ]


async def test_it_deletes_one_memory_conversation(client: AsyncClient) -> None:
    conversation_id = own_id("memory-delete")
    await send_memory(client, {"message": "forget me", "conversation_id": conversation_id})
    body = await ok(client, "DELETE", f"/memory-chat/conversations/{conversation_id}")
    assert body["status"] == "success"
    assert body["message"] == f"Deleted conversation {conversation_id}"
    assert isinstance(body["remaining_conversations"], int)
    assert_conversation_not_found(await call(client, "GET", f"/memory-chat/conversations/{conversation_id}"))


async def test_it_answers_404_for_an_unknown_memory_conversation(client: AsyncClient) -> None:
    unknown = own_id("never-created")
    assert_conversation_not_found(await call(client, "GET", f"/memory-chat/conversations/{unknown}"))
    assert_conversation_not_found(await call(client, "DELETE", f"/memory-chat/conversations/{unknown}"))


async def test_it_clears_every_memory_conversation(client: AsyncClient) -> None:
    chat_id = own_id("survives-clear")
    await send_chat(client, {"message": "I stay", "conversation_id": chat_id})
    ids = [own_id("clear"), own_id("clear")]
    for conversation_id in ids:
        await send_memory(client, {"message": "to be cleared", "conversation_id": conversation_id})
    before = (await ok(client, "GET", "/memory-chat/conversations"))["total_conversations"]
    assert before >= 2

    body = await ok(client, "DELETE", "/memory-chat/conversations")
    assert body["status"] == "success"
    assert body["message"] == f"Cleared {before} conversations from memory"
    assert body["remaining_conversations"] == 0

    assert (await ok(client, "GET", "/memory-chat/conversations"))["total_conversations"] == 0
    assert (await ok(client, "GET", "/memory-chat/health"))["active_conversations"] == 0
    for conversation_id in ids:
        assert_conversation_not_found(
            await call(client, "GET", f"/memory-chat/conversations/{conversation_id}")
        )
    assert (await ok(client, "GET", f"/chat/conversations/{chat_id}"))["conversation"]["id"] == chat_id


async def test_it_keeps_memory_and_chat_conversations_apart(client: AsyncClient) -> None:
    memory_id = (await send_memory(client, {"message": "memory side"}))["conversation_id"]
    chat_id = (await send_chat(client, {"message": "chat side"}))["conversation_id"]

    assert_conversation_not_found(await call(client, "GET", f"/chat/conversations/{memory_id}"))
    assert_conversation_not_found(await call(client, "GET", f"/memory-chat/conversations/{chat_id}"))
    chats = await ok(client, "GET", "/chat/conversations", params={"limit": 500})
    memories = await ok(client, "GET", "/memory-chat/conversations", params={"limit": 500})
    chat_ids = {c["id"] for c in chats["conversations"]}
    memory_ids = {c["id"] for c in memories["conversations"]}
    assert chat_id in chat_ids and memory_id not in chat_ids
    assert memory_id in memory_ids and chat_id not in memory_ids


async def test_it_keeps_the_same_id_separate_in_each_chat(client: AsyncClient) -> None:
    shared = own_id("shared")
    await send_chat(client, {"message": "real", "conversation_id": shared})
    memory = await send_memory(client, {"message": "echo", "conversation_id": shared})
    assert memory["message_count"] == 2
    chat = (await ok(client, "GET", f"/chat/conversations/{shared}"))["conversation"]
    assert [m["content"] for m in chat["messages"]] == ["real", "Fake reply to: real"]
