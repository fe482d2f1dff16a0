"""Spending guards: rate limit, model allow-list (OpenRouter's fallback `models`, `n` and reasoning
tokens on /v1 included), token cap, client keys, body size."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream

MESSAGE = {"message": "hi"}
V1 = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


async def post(client: AsyncClient, body: dict[str, Any], **headers: str) -> Any:
    return await client.post("/chat/message", body, content_type="application/json", headers=headers)


async def test_it_limits_the_rate_per_client(client: AsyncClient, settings: Any) -> None:
    settings.RATE_LIMIT = (3, 3600)
    statuses = [(await post(client, MESSAGE)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await post(client, MESSAGE)
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 3600
    assert limited["RateLimit-Limit"] == "3" and limited["RateLimit-Remaining"] == "0"


@pytest.mark.parametrize("path", ["/memory-chat/message", "/test-chat/message"])
async def test_it_limits_the_echo_chats_too(client: AsyncClient, settings: Any, path: str) -> None:
    settings.RATE_LIMIT = (2, 3600)
    statuses = [
        (await client.post(path, MESSAGE, content_type="application/json")).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert (await post(client, MESSAGE)).status_code == 429  # one budget for everything that stores


async def test_it_counts_clients_apart_by_forwarded_address_behind_a_trusted_proxy(
    client: AsyncClient, settings: Any
) -> None:
    settings.RATE_LIMIT = (1, 3600)
    settings.TRUSTED_PROXY_HOPS = 1
    assert (await post(client, MESSAGE, X_Forwarded_For="10.0.0.1, 203.0.113.1")).status_code == 200
    assert (await post(client, MESSAGE, X_Forwarded_For="203.0.113.2")).status_code == 200
    assert (await post(client, MESSAGE, X_Forwarded_For="10.0.0.9, 203.0.113.1")).status_code == 429


async def test_it_ignores_forwarded_addresses_unless_trusted(client: AsyncClient, settings: Any) -> None:
    settings.RATE_LIMIT = (1, 3600)
    assert (await post(client, MESSAGE, X_Forwarded_For="203.0.113.1")).status_code == 200
    assert (await post(client, MESSAGE, X_Forwarded_For="203.0.113.2")).status_code == 429


async def test_it_counts_access_keys_apart(client: AsyncClient, settings: Any) -> None:
    settings.RATE_LIMIT = (1, 3600)
    settings.BACKEND_API_KEYS = ["ak-one-0123456789", "ak-two-0123456789"]
    assert (await post(client, MESSAGE, X_API_Key="ak-one-0123456789")).status_code == 200
    assert (await post(client, MESSAGE, X_API_Key="ak-two-0123456789")).status_code == 200
    assert (await post(client, MESSAGE, X_API_Key="ak-one-0123456789")).status_code == 429


async def test_it_turns_the_rate_limit_off_with_zero(client: AsyncClient, settings: Any) -> None:
    settings.RATE_LIMIT = (0, 0)
    statuses = [(await post(client, MESSAGE)).status_code for _ in range(5)]
    assert statuses == [200] * 5


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/message", {"message": "hi", "model": "openai/gpt-4o"}),
        ("/openrouter/test", {"message": "hi", "model": "openai/gpt-4o"}),
        ("/v1/chat/completions", {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
    ],
)
async def test_it_refuses_models_outside_the_allow_list(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any, path: str, body: dict[str, Any]
) -> None:
    settings.ALLOWED_MODELS = ["openai/gpt-4o-mini", "anthropic/*"]
    response = await client.post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert "model_not_allowed" in response.content.decode()
    assert fake_upstream.requests == []
    allowed = await post(client, {"message": "hi", "model": "anthropic/claude-3-haiku"})
    assert allowed.status_code == 200


async def test_it_refuses_a_client_key_when_told(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.ALLOW_CLIENT_API_KEY = False
    response = await post(client, {"message": "hi", "api_key": "sk-or-v1-client"})
    assert response.status_code == 400
    assert response.json()["code"] == "client_api_key_not_allowed"
    assert fake_upstream.requests == []


def test_it_refuses_a_large_body_without_reading_it(http: httpx.Client) -> None:
    huge = b'{"message": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = http.post("/chat/message", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def test_it_refuses_a_large_chunked_body(http: httpx.Client) -> None:
    def chunks() -> Any:
        yield b'{"message": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = http.post("/chat/message", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_it_still_accepts_a_normal_body(http: httpx.Client) -> None:
    assert http.post("/memory-chat/message", json={"message": "small"}).status_code == 200


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"models": ["anthropic/claude-3-opus"]}, "model_not_allowed"),
        ({"models": "openai/gpt-4o"}, "bad_request"),
        ({"n": 50}, "n_not_supported"),
        ({"reasoning": {"max_tokens": 100000}}, "max_tokens_too_large"),
    ],
)
async def test_it_guards_openrouter_fields_on_v1(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any, extra: dict[str, Any], code: str
) -> None:
    settings.ALLOWED_MODELS = ["openai/*"]
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, **extra}
    response = await client.post(V1, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert fake_upstream.requests == []


async def test_it_passes_allowed_fallbacks_on_v1(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.ALLOWED_MODELS = ["openai/*"]
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "models": ["openai/gpt-4o"], "n": 1}
    assert (await client.post(V1, body, content_type="application/json")).status_code == 200
    assert fake_upstream.completions()[0].body["models"] == ["openai/gpt-4o"]
