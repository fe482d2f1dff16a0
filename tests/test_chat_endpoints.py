"""/chat/*: the real chat. A message goes upstream with its conversation's history, the reply is stored,
and the conversations can be listed, shown and deleted; the service's info, health and model list.

In-process through the NinjaAPI, and one live smoke test over real HTTP (the README's quick start)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from django.test import AsyncClient

from tests.answers import (
    DOCUMENTED_MODELS,
    FAKE_USAGE_TOTAL,
    assert_conversation_not_found,
    assert_iso,
    call,
    live_ok,
    ok,
    own_id,
)
from tests.fake_upstream import FakeUpstream, Reply


async def send_chat(client: AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    return await ok(client, "POST", "/chat/message", json_body=payload)


def test_it_runs_the_quick_start_as_written(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    """The live smoke test of /chat: the README's quick start, over real HTTP."""
    first = live_ok(
        http,
        "POST",
        "/chat/message",
        json={"message": "Hello! Can you help me with coding?", "model": "openai/gpt-4o-mini"},
    )
    assert first["status"] == "success"
    assert set(first) >= {"conversation_id", "response", "model", "timestamp", "usage", "status"}
    assert first["response"] == "Fake reply to: Hello! Can you help me with coding?"
    assert first["model"] == "openai/gpt-4o-mini"
    assert_iso(first["timestamp"])
    assert set(first["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    conversation_id = first["conversation_id"]
    uuid.UUID(conversation_id)

    second = live_ok(
        http,
        "POST",
        "/chat/message",
        json={
            "message": "Write a Python function to calculate fibonacci",
            "conversation_id": conversation_id,
            "model": "openai/gpt-4o-mini",
        },
    )
    assert second["conversation_id"] == conversation_id
    assert second["response"] == "Fake reply to: Write a Python function to calculate fibonacci"

    sent = fake_upstream.completions()
    assert len(sent) == 2
    assert sent[1].body["model"] == "openai/gpt-4o-mini"
    contents = [m["content"] for m in sent[1].body["messages"]]
    assert "Hello! Can you help me with coding?" in contents
    assert contents[-1] == "Write a Python function to calculate fibonacci"


async def test_it_describes_the_chat_service(client: AsyncClient) -> None:
    body = await ok(client, "GET", "/chat/")
    assert body["service"] == "openrouter-chat"
    assert isinstance(body["status"], str)
    assert isinstance(body["description"], str) and body["description"]
    assert isinstance(body["active_conversations"], int)
    assert set(body["supported_models"]) >= DOCUMENTED_MODELS
    assert isinstance(body["endpoints"], dict) and body["endpoints"]


async def test_it_reports_chat_health_without_the_key(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    body = await ok(client, "GET", "/chat/health")
    assert body["status"] == "healthy"
    assert body["service"] == "openrouter-chat"
    assert body["api_key_configured"] is True
    assert isinstance(body["active_conversations"], int)
    assert body["openrouter_endpoint"] == fake_upstream.url
    assert_iso(body["timestamp"])
    assert fake_upstream.completions() == []


async def test_it_counts_a_new_chat_conversation_in_chat_health(client: AsyncClient) -> None:
    before = (await ok(client, "GET", "/chat/health"))["active_conversations"]
    await send_chat(client, {"message": "count me", "conversation_id": own_id("health")})
    after = (await ok(client, "GET", "/chat/health"))["active_conversations"]
    assert after == before + 1


async def test_it_lists_the_chat_models_with_the_recommended_one(client: AsyncClient) -> None:
    body = await ok(client, "GET", "/chat/models")
    assert body["status"] == "success"
    models = body["models"]
    assert isinstance(models, list) and models
    for model in models:
        assert {"id", "name", "description", "recommended"} <= set(model)
        assert isinstance(model["id"], str) and isinstance(model["name"], str)
    recommended = [m["id"] for m in models if m["recommended"]]
    assert recommended == ["openai/gpt-4o-mini"]


async def test_it_grows_message_count_and_total_tokens(client: AsyncClient) -> None:
    conversation_id = own_id("grow")
    first = await send_chat(client, {"message": "one", "conversation_id": conversation_id})
    assert first["conversation_id"] == conversation_id
    assert first["message_count"] == 2
    assert first["total_tokens"] == first["usage"]["total_tokens"] == FAKE_USAGE_TOTAL

    second = await send_chat(client, {"message": "two", "conversation_id": conversation_id})
    assert second["message_count"] == 4
    assert second["total_tokens"] == first["total_tokens"] + second["usage"]["total_tokens"]
    assert second["total_tokens"] > first["total_tokens"]


async def test_it_names_the_model_the_upstream_used(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(model="fake/served-model"))
    conversation_id = own_id("served")
    body = await send_chat(
        client, {"message": "which model?", "model": "openai/gpt-4o-mini", "conversation_id": conversation_id}
    )
    assert fake_upstream.completions()[0].body["model"] == "openai/gpt-4o-mini"
    assert body["model"] == "fake/served-model"

    stored = (await ok(client, "GET", f"/chat/conversations/{conversation_id}"))["conversation"]
    assert stored["model"] == "fake/served-model"
    assert stored["messages"][-1]["model"] == "fake/served-model"


async def test_it_lists_a_chat_conversation_with_its_summary(client: AsyncClient) -> None:
    conversation_id = own_id("list")
    await send_chat(client, {"message": "list me", "conversation_id": conversation_id})
    body = await ok(client, "GET", "/chat/conversations")
    assert body["status"] == "success"
    assert body["total_conversations"] >= 1
    assert isinstance(body["conversations"], list)
    mine = [c for c in body["conversations"] if c["id"] == conversation_id]
    assert len(mine) == 1
    summary = mine[0]
    assert {"id", "created_at", "message_count", "model", "total_tokens", "last_message"} <= set(summary)
    assert summary["message_count"] == 2
    assert summary["total_tokens"] == FAKE_USAGE_TOTAL
    assert summary["last_message"] == "Fake reply to: list me"
    assert_iso(summary["created_at"])


async def test_it_shows_one_chat_conversation_with_its_messages(client: AsyncClient) -> None:
    conversation_id = own_id("detail")
    await send_chat(
        client, {"message": "show me", "conversation_id": conversation_id, "model": "openai/gpt-4o"}
    )
    body = await ok(client, "GET", f"/chat/conversations/{conversation_id}")
    assert body["status"] == "success"
    conversation = body["conversation"]
    assert conversation["id"] == conversation_id
    assert_iso(conversation["created_at"])
    assert conversation["model"] == "openai/gpt-4o"
    assert conversation["total_tokens"] == FAKE_USAGE_TOTAL
    messages = conversation["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert [m["content"] for m in messages] == ["show me", "Fake reply to: show me"]
    for message in messages:
        assert_iso(message["timestamp"])


async def test_it_deletes_a_chat_conversation(client: AsyncClient) -> None:
    conversation_id = own_id("delete")
    await send_chat(client, {"message": "delete me", "conversation_id": conversation_id})
    before = (await ok(client, "GET", "/chat/conversations"))["total_conversations"]

    body = await ok(client, "DELETE", f"/chat/conversations/{conversation_id}")
    assert body["status"] == "success"
    assert body["message"] == f"Deleted conversation {conversation_id}"
    assert body["remaining_conversations"] == before - 1

    assert_conversation_not_found(await call(client, "GET", f"/chat/conversations/{conversation_id}"))
    assert_conversation_not_found(await call(client, "DELETE", f"/chat/conversations/{conversation_id}"))


async def test_it_answers_404_for_an_unknown_chat_conversation(client: AsyncClient) -> None:
    unknown = own_id("never-created")
    assert_conversation_not_found(await call(client, "GET", f"/chat/conversations/{unknown}"))
    assert_conversation_not_found(await call(client, "DELETE", f"/chat/conversations/{unknown}"))
