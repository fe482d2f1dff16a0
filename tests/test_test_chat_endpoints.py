"""/test-chat/message: an echo with a test marker that never calls the upstream and keeps its
conversations apart from /chat's and /memory-chat's.

In-process through the NinjaAPI, and one live smoke test over real HTTP."""

from __future__ import annotations

import httpx
from django.test import AsyncClient

from tests.answers import assert_conversation_not_found, assert_error, assert_iso, call, live_ok, ok, own_id
from tests.fake_upstream import FakeUpstream


def test_it_echoes_in_test_chat(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    """The live smoke test of /test-chat."""
    first = live_ok(http, "POST", "/test-chat/message", json={"message": "ping"})
    assert first["response"] == "Echo: ping (Test response from HF Spaces)"
    assert first["status"] == "success"
    assert first["message_count"] == 2
    assert_iso(first["timestamp"])
    second = live_ok(
        http,
        "POST",
        "/test-chat/message",
        json={"message": "pong", "conversation_id": first["conversation_id"]},
    )
    assert second["conversation_id"] == first["conversation_id"]
    assert second["message_count"] == 4
    assert fake_upstream.requests == []


async def test_it_keeps_test_chat_conversations_apart(client: AsyncClient) -> None:
    conversation_id = own_id("test-chat")
    body = await ok(
        client, "POST", "/test-chat/message", json_body={"message": "x", "conversation_id": conversation_id}
    )
    assert body["conversation_id"] == conversation_id
    assert_conversation_not_found(await call(client, "GET", f"/chat/conversations/{conversation_id}"))
    assert_conversation_not_found(await call(client, "GET", f"/memory-chat/conversations/{conversation_id}"))
    assert (await ok(client, "GET", "/chat/conversations"))["total_conversations"] == 0
    assert (await ok(client, "GET", "/memory-chat/conversations"))["total_conversations"] == 0


async def test_it_refuses_an_empty_test_chat_message_and_stores_nothing(client: AsyncClient) -> None:
    conversation_id = own_id("test-chat-empty")
    refused = await call(
        client, "POST", "/test-chat/message", json_body={"message": "", "conversation_id": conversation_id}
    )
    assert_error(refused, 422, "validation_error")
    again = await ok(
        client, "POST", "/test-chat/message", json_body={"message": "now", "conversation_id": conversation_id}
    )
    assert again["message_count"] == 2
