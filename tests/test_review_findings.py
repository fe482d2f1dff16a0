"""Faults an independent review found: each one proved fixed."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from django.test import AsyncClient

from stores.base import MAX_MODELS_TRACKED
from tests.conftest import SECRET, LiveServer
from tests.fake_upstream import FakeUpstream, Reply

V1 = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


async def test_it_ignores_impossible_token_counts(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    body = {
        "choices": [{"message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1e308, "completion_tokens": -5, "total_tokens": 10**30},
    }
    fake_upstream.queue(Reply(body=body))
    response = await client.post(
        "/chat/message", {"message": "q", "conversation_id": "odd"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for path in ("/chat/conversations", "/chat/conversations/odd", "/chat/health", "/api/hf/status"):
        assert (await client.get(path)).status_code == 200, path


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


async def test_it_bounds_the_model_statistics(client: AsyncClient) -> None:
    from stores import get_store

    store = get_store()
    for n in range(MAX_MODELS_TRACKED + 50):
        await store.record_call(
            f"junk/{n}", prompt_tokens=1, completion_tokens=1, error="upstream_bad_request"
        )
    usage = await store.usage()
    assert len(usage["by_model"]) == MAX_MODELS_TRACKED + 1
    assert usage["by_model"]["other"]["requests"] == 50


def test_it_keeps_secrets_and_forged_lines_out_of_access_lines(http: httpx.Client) -> None:
    http.get(f"/chat/conversations/{SECRET}")
    http.get("/x%0a2026-11-25 21:00:00,000 INFO gateway.access: GET /admin 200 forged")
    logs = http.get("/api/hf/logs?limit=20").json()["logs"]
    text = str(logs)
    assert SECRET not in text
    assert logs and all("\n" not in r["message"] for r in logs)
    assert not [r for r in logs if r["message"].startswith("GET /admin")]
    unmatched = [r for r in logs if r.get("status") == 404 and r.get("path") == "unmatched"]
    assert unmatched, "the public log shows an unmatched path only as 'unmatched'"


async def test_it_deletes_nothing_that_has_expired(client: AsyncClient, settings: Any) -> None:
    from unittest import mock

    await client.post(
        "/memory-chat/message", {"message": "x", "conversation_id": "old"}, content_type="application/json"
    )
    with mock.patch("stores.local.time.monotonic", return_value=10**12):
        assert (await client.delete("/memory-chat/conversations/old")).status_code == 404


def test_it_answers_head_on_liveness_checks(http: httpx.Client) -> None:
    assert http.head("/health").status_code == 200
    assert http.head("/api/hf/ready").status_code == 200


def test_it_echoes_no_path_in_a_404(http: httpx.Client) -> None:
    response = http.get("/nonexistent/<script>")
    assert response.status_code == 404 and "<script>" not in response.text


def test_it_explains_v1_validation_errors(http: httpx.Client) -> None:
    error = http.post(V1, json={"messages": []}).json()["error"]
    assert "messages" in error["message"]


def test_it_gives_the_413_the_usual_headers(http: httpx.Client) -> None:
    big = b"x" * (2 * 1024 * 1024)
    plain = http.post("/chat/message", content=big, headers={"Origin": "https://a.example"})
    assert plain.status_code == 413
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert plain.headers["access-control-allow-origin"] == "*"
    openai_shaped = http.post(V1, content=big)
    assert openai_shaped.json()["error"]["code"] == "request_too_large"


def disconnects(http: httpx.Client) -> int:
    return http.get("/chat/health").json()["usage"]["errors_by_kind"].get("client_disconnected", 0)


def test_it_counts_a_stream_the_client_abandoned(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    before = disconnects(http)
    fake_upstream.queue(Reply(chunks=[f"w{n}" for n in range(40)], chunk_delay=0.05))
    with http.stream("POST", "/chat/message", json={"message": "q", "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("event: delta"):
                break
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and disconnects(http) == before:
        time.sleep(0.05)
    assert disconnects(http) == before + 1


def test_it_maps_cors_origins_from_the_environment(fake_upstream: FakeUpstream) -> None:
    server = LiveServer({"LLM_BASE_URL": fake_upstream.url, "CORS_ALLOWED_ORIGINS": "https://app.example"})
    try:
        allowed = httpx.get(f"{server.url}/health", headers={"Origin": "https://app.example"})
        refused = httpx.get(f"{server.url}/health", headers={"Origin": "https://evil.example"})
    finally:
        server.stop()
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in refused.headers
