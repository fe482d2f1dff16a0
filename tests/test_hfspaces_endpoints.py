"""/api/hf/*: the HuggingFace Space's diagnostics: status, readiness (GET and HEAD), the settings with
the key shown only as set, debug information and a test conversation that needs no upstream.
(/api/hf/logs has its own file, test_logs.py.)

In-process through the NinjaAPI, and one live smoke test over real HTTP."""

from __future__ import annotations

import re
import uuid

import httpx
from django.test import AsyncClient

from tests.answers import live_ok, ok
from tests.fake_upstream import FakeUpstream


def test_it_reports_the_spaces_status(http: httpx.Client) -> None:
    """The live smoke test of /api/hf."""
    body = live_ok(http, "GET", "/api/hf/status")
    assert body["status"] == "running"
    assert body["environment"] == "huggingface-spaces"
    assert body["LLM_API_KEY"] == "set"


async def test_it_reports_readiness(client: AsyncClient) -> None:
    body = await ok(client, "GET", "/api/hf/ready")
    assert body["ready"] is True
    assert isinstance(body["message"], str) and body["message"]
    assert body["api_available"] is True


async def test_it_answers_head_on_readiness(client: AsyncClient) -> None:
    response = await client.head("/api/hf/ready")
    assert response.status_code == 200


async def test_it_shows_the_environment_with_the_key_as_set(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    body = await ok(client, "GET", "/api/hf/environment")
    variables = body["environment_variables"]
    assert variables["LLM_API_KEY"] == "set"
    assert variables["LLM_MODEL"] == "openai/gpt-4o-mini"
    assert variables["LLM_BASE_URL"] == fake_upstream.url
    assert variables["LLM_TEMPERATURE"] == 0.7


async def test_it_shows_debug_information(client: AsyncClient) -> None:
    body = await ok(client, "GET", "/api/hf/debug")
    assert isinstance(body["system"]["platform"], str) and body["system"]["platform"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", body["system"]["python_version"])
    assert body["environment"]["LLM_API_KEY"] == "set"


async def test_it_runs_the_hf_test_conversation_with_a_body(client: AsyncClient) -> None:
    body = await ok(client, "POST", "/api/hf/test-conversation", json_body={"message": "hello spaces"})
    assert body["status"] == "success"
    assert body["message"] == "hello spaces"
    assert body["test"] is True
    uuid.UUID(body["conversation_id"])


async def test_it_runs_the_hf_test_conversation_without_a_body(client: AsyncClient) -> None:
    body = await ok(client, "POST", "/api/hf/test-conversation")
    assert body["status"] == "success"
    assert isinstance(body["message"], str) and body["message"]
    assert body["test"] is True
    uuid.UUID(body["conversation_id"])
