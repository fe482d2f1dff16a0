"""Bring your own key on /v1: when the server has no LLM_API_KEY, the client's own Bearer token goes
upstream (the way OpenAI clients send it); with no key at all, OpenRouter is not called and the answer is
OpenAI's authentication_error."""

from __future__ import annotations

from typing import Any

from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream

BODY = {"messages": [{"role": "user", "content": "hi"}]}


async def test_it_forwards_the_client_token_when_the_server_has_no_key(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_API_KEY = ""
    response = await client.post(
        "/v1/chat/completions",
        BODY,
        content_type="application/json",
        headers={"Authorization": "Bearer sk-byo"},
    )
    assert response.status_code == 200
    assert fake_upstream.completions()[0].headers["authorization"] == "Bearer sk-byo"


async def test_it_needs_some_key_for_openrouter(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_API_KEY = ""
    settings.LLM_BASE_URL = "https://openrouter.ai/api/v1"
    response = await client.post("/v1/chat/completions", BODY, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert fake_upstream.requests == []
