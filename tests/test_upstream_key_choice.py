"""Which LLM key goes upstream on /chat: the server's LLM_API_KEY as a Bearer token, or the request's own
`api_key` when it sends one; none for a local upstream, and a clear 401 when OpenRouter would need one.
(Access control for callers: test_access_keys_backend.py; /v1's bring your own key:
test_v1_bring_your_own_key.py.)"""

from __future__ import annotations

from typing import Any

from django.test import AsyncClient

from tests.conftest import SECRET
from tests.fake_upstream import FakeUpstream


async def test_it_sends_the_server_key_as_bearer(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    response = await client.post("/chat/message", {"message": "hi"}, content_type="application/json")
    assert response.status_code == 200
    sent = fake_upstream.completions()[0].headers
    assert sent["authorization"] == f"Bearer {SECRET}"
    assert sent["http-referer"] and sent["x-title"]
    assert SECRET not in response.content.decode()


async def test_it_prefers_the_request_key(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    body = {"message": "hi", "api_key": "sk-or-v1-request-key"}
    response = await client.post("/chat/message", body, content_type="application/json")
    assert response.status_code == 200
    assert fake_upstream.completions()[0].headers["authorization"] == "Bearer sk-or-v1-request-key"
    assert "sk-or-v1-request-key" not in response.content.decode()


async def test_it_never_sends_an_access_key_upstream(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    """An access key sent as api_key (it authenticates here) would reach a third party: refused."""
    settings.BACKEND_API_KEYS = ["ak-secret-access-0123456789"]
    key = "ak-secret-access-0123456789"
    for path in ("/chat/message", "/openrouter/test"):
        response = await client.post(
            path,
            {"message": "hi", "api_key": key},
            content_type="application/json",
            headers={"X-API-Key": key},
        )
        assert response.status_code == 400 and response.json()["code"] == "invalid_api_key"
        assert key not in response.content.decode()
    assert fake_upstream.completions() == []


async def test_its_own_streams_ask_for_their_usage(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    """Most upstreams report a stream's usage only when asked: the token budgets need it."""
    response: Any = await client.post(
        "/chat/message", {"message": "hi", "stream": True}, content_type="application/json"
    )
    assert b"event: done" in b"".join([part async for part in response.streaming_content])
    assert fake_upstream.completions()[0].body["stream_options"] == {"include_usage": True}


async def test_it_requires_a_key_for_openrouter(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_API_KEY = ""
    settings.LLM_BASE_URL = "https://openrouter.ai/api/v1"
    response = await client.post("/chat/message", {"message": "hi"}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_required"
    assert fake_upstream.requests == []


async def test_it_calls_a_local_upstream_without_a_key(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_API_KEY = ""
    response = await client.post("/chat/message", {"message": "hi"}, content_type="application/json")
    assert response.status_code == 200
    assert "authorization" not in fake_upstream.completions()[0].headers


async def test_it_reports_an_upstream_that_rejects_the_key(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.require_key = "sk-or-v1-the-right-one"
    response = await client.post("/chat/message", {"message": "hi"}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["code"] == "upstream_unauthorized"
    assert SECRET not in response.content.decode()
