"""Request bodies are JSON, and say so: anything else gets 415 before it is read, so a browser can never
post to the gateway cross-site without a CORS preflight. Private Network Access is not granted unless
configured."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream

BODY = '{"message": "hi"}'


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_it_refuses_a_body_that_is_not_declared_json(
    http: httpx.Client, fake_upstream: FakeUpstream, content_type: str
) -> None:
    response = http.post("/chat/message", content=BODY, headers={"Content-Type": content_type})
    assert response.status_code == 415
    body = response.json()
    assert body["status"] == "error" and body["code"] == "unsupported_media_type"
    assert fake_upstream.requests == []  # the owner's key was not spent


def test_it_refuses_a_body_without_a_content_type(http: httpx.Client) -> None:
    response = http.post("/memory-chat/message", content=BODY, headers={"Content-Type": ""})
    assert response.status_code == 415


def test_it_answers_415_in_openais_shape_under_v1(http: httpx.Client) -> None:
    body = '{"messages": [{"role": "user", "content": "hi"}]}'
    response = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_it_accepts_json(http: httpx.Client, content_type: str) -> None:
    response = http.post("/memory-chat/message", content=BODY, headers={"Content-Type": content_type})
    assert response.status_code == 200


def test_it_accepts_no_body_where_the_body_is_optional(http: httpx.Client) -> None:
    response = http.post("/api/hf/test-conversation", headers={"Content-Type": "text/plain"})
    assert response.status_code == 200


def test_it_does_not_grant_private_network_access_by_default(http: httpx.Client) -> None:
    response = http.options(
        "/chat/message",
        headers={
            "Origin": "https://public.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert response.status_code == 200
    assert "access-control-allow-private-network" not in response.headers


async def test_it_grants_private_network_access_when_configured(client: AsyncClient, settings: Any) -> None:
    settings.CORS_ALLOW_PRIVATE_NETWORK = True
    response = await client.options(
        "/chat/message",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert response["Access-Control-Allow-Private-Network"] == "true"


@pytest.mark.parametrize("body", [b'"str"', b"[]", b"null", b"42"])
@pytest.mark.parametrize("path", ["/openrouter/test", "/api/hf/test-conversation", "/v1/chat/completions"])
async def test_a_body_that_is_not_an_object_is_refused(
    client: AsyncClient, fake_upstream: FakeUpstream, path: str, body: bytes
) -> None:
    """Read as no fields at all, `"str"` or `[]` made /openrouter/test call the upstream with its
    defaults (review)."""
    answer = await client.post(path, body, content_type="application/json")
    assert answer.status_code == 400, answer.content[:200]
    assert "must be a JSON object" in answer.content.decode()
    assert fake_upstream.completions() == []


@pytest.mark.parametrize("stream", [False, True])
async def test_a_body_nested_too_deeply_to_be_sent_on_is_refused(
    client: AsyncClient, fake_upstream: FakeUpstream, stream: bool
) -> None:
    """A tool's parameters 250 levels deep passed the parser's check, then went one level deeper in the
    upstream request, past orjson's limit: a 500, and the call's hold kept (review)."""
    deep = "[" * 250 + "]" * 250
    body = (
        '{"input": "hi", "stream": %s, "tools": [{"type": "function", "name": "f", "parameters": {"a": %s}}]}'
    )
    answer = await client.post(
        "/v1/responses",
        (body % ("true" if stream else "false", deep)).encode(),
        content_type="application/json",
    )
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]["message"]
    assert fake_upstream.completions() == []
