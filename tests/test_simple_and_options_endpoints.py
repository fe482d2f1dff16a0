"""/api/simple/* (a stateless echo conversation and its health check) and /api/options/config (the
non-secret settings a front end reads at start-up).

In-process through the NinjaAPI, and one live smoke test over real HTTP for each of the two routers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from django.test import AsyncClient

from tests.answers import live_ok, ok, own_id


def test_it_answers_the_simple_health_check(http: httpx.Client) -> None:
    """The live smoke test of /api/simple."""
    body = live_ok(http, "GET", "/api/simple/health")
    assert body["status"] == "healthy"
    assert body["service"] == "simple-conversation"
    assert isinstance(body["message"], str) and body["message"]


def test_it_serves_the_front_end_options(http: httpx.Client) -> None:
    """The live smoke test of /api/options."""
    body = live_ok(http, "GET", "/api/options/config")
    assert body["APP_MODE"] == "oss"
    assert "GITHUB_CLIENT_ID" in body
    assert "POSTHOG_CLIENT_KEY" in body
    assert isinstance(body["FEATURE_FLAGS"]["ENABLE_BILLING"], bool)
    assert isinstance(body["FEATURE_FLAGS"]["HIDE_LLM_SETTINGS"], bool)


async def test_it_echoes_a_simple_conversation(client: AsyncClient) -> None:
    body = await ok(client, "POST", "/api/simple/conversation", json_body={"message": "hi simple"})
    assert body["status"] == "success"
    assert body["message"] == "Conversation created successfully"
    assert body["response"] == "Echo: hi simple"
    assert body["user_message"] == "hi simple"
    uuid.UUID(body["conversation_id"])

    given = own_id("simple")
    again = await ok(
        client, "POST", "/api/simple/conversation", json_body={"message": "x", "conversation_id": given}
    )
    assert again["conversation_id"] == given


async def test_it_stores_no_simple_conversation(client: AsyncClient) -> None:
    given = own_id("simple-stateless")
    await ok(client, "POST", "/api/simple/conversation", json_body={"message": "x", "conversation_id": given})
    for path in (f"/chat/conversations/{given}", f"/memory-chat/conversations/{given}"):
        assert (await client.get(path)).status_code == 404
    assert (await ok(client, "GET", "/api/hf/status"))["active_conversations"] == {
        "chat": 0,
        "memory_chat": 0,
    }


async def test_it_serves_the_settings_a_front_end_needs(client: AsyncClient, settings: Any) -> None:
    settings.GITHUB_CLIENT_ID = "gh-client-id"
    settings.LLM_API_KEY = ""
    body = await ok(client, "GET", "/api/options/config")
    assert body["GITHUB_CLIENT_ID"] == "gh-client-id"
    assert body["DEFAULT_MODEL"] == settings.LLM_MODEL
    assert body["LLM_BASE_URL"] == settings.LLM_BASE_URL
    assert body["MAX_TOKENS_LIMIT"] == settings.LLM_MAX_TOKENS_LIMIT
    assert body["MESSAGE_MAX_CHARS"] == settings.MESSAGE_MAX_CHARS
    assert body["API_KEY_CONFIGURED"] is False
