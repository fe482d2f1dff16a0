"""/openrouter/*: one test message sent upstream and nothing kept; the service's info, health (the key
only as set or not) and the upstream's model ids.

In-process through the NinjaAPI, and one live smoke test over real HTTP."""

from __future__ import annotations

import httpx
from django.test import AsyncClient

from tests.answers import FAKE_USAGE_TOTAL, assert_iso, live_ok, ok
from tests.fake_upstream import FakeUpstream, Reply


def test_it_tests_the_upstream_through_openrouter_test(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    """The live smoke test of /openrouter."""
    fake_upstream.queue(Reply(model="fake/served-model", content="pong"))
    body = live_ok(
        http, "POST", "/openrouter/test", json={"message": "Test OpenRouter", "model": "openai/gpt-4o-mini"}
    )
    assert body["status"] == "success"
    assert body["request_message"] == "Test OpenRouter"
    assert body["response_message"] == "pong"
    assert body["model_used"] == "fake/served-model"
    assert_iso(body["timestamp"])
    assert body["usage"]["total_tokens"] == FAKE_USAGE_TOTAL
    assert isinstance(body["openrouter_response"], dict)
    sent = fake_upstream.completions()
    assert len(sent) == 1
    assert sent[0].body["model"] == "openai/gpt-4o-mini"


async def test_it_keeps_no_openrouter_test_conversation(client: AsyncClient) -> None:
    before = (await ok(client, "GET", "/chat/conversations"))["total_conversations"]
    await ok(client, "POST", "/openrouter/test", json_body={"message": "no memory"})
    assert (await ok(client, "GET", "/chat/conversations"))["total_conversations"] == before


async def test_it_describes_the_openrouter_test_service(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    body = await ok(client, "GET", "/openrouter/")
    assert body["service"] == "openrouter-test"
    assert isinstance(body["status"], str)
    assert isinstance(body["description"], str)
    assert isinstance(body["endpoints"], dict) and body["endpoints"]
    assert body["default_model"] == "openai/gpt-4o-mini"
    assert body["base_url"] == fake_upstream.url


async def test_it_reports_openrouter_health_with_key_presence_only(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    body = await ok(client, "GET", "/openrouter/health")
    assert body["status"] == "healthy"
    assert body["service"] == "openrouter-test"
    assert body["api_key_configured"] is True
    assert body["base_url"] == fake_upstream.url
    assert_iso(body["timestamp"])
    assert body["environment_vars"]["LLM_API_KEY"] == "set"


async def test_it_lists_openrouter_model_ids(client: AsyncClient) -> None:
    body = await ok(client, "GET", "/openrouter/models")
    assert body["status"] == "success"
    models = body["models"]
    assert isinstance(models, list) and models
    assert all(isinstance(m, str) for m in models)
    assert body["total_models"] == len(models)
    assert "openai/gpt-4o-mini" in models
    assert_iso(body["timestamp"])
