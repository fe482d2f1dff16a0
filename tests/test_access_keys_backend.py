"""Access control with BACKEND_API_KEYS, the keys callers present to this service (not the LLM key):
liveness, readiness and the docs stay open; every other endpoint needs a key, by Bearer or X-API-Key;
an access key is never forwarded upstream. (Which LLM key goes upstream: test_upstream_key_choice.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream

ACCESS_KEY = "ak-test-access-key-0123456789"
OPEN_PATHS = [
    "/",
    "/health",
    "/chat/health",
    "/memory-chat/health",
    "/openrouter/health",
    "/api/simple/health",
    "/api/hf/ready",
    "/openapi.json",
]
GUARDED = [
    ("get", "/chat/"),
    ("get", "/chat/models"),
    ("get", "/chat/conversations"),
    ("get", "/memory-chat/conversations"),
    ("delete", "/memory-chat/conversations"),
    ("get", "/api/hf/status"),
    ("get", "/api/hf/environment"),
    ("get", "/api/hf/logs"),
    ("get", "/api/options/config"),
    ("get", "/v1/models"),
    ("post", "/chat/message"),
    ("post", "/v1/chat/completions"),
    ("get", "/v1/models/openai/gpt-4o-mini"),
    ("post", "/v1/responses"),
    ("get", "/v1/responses/resp_1"),
    ("delete", "/v1/responses/resp_1"),
    ("post", "/v1/conversations"),
    ("get", "/v1/conversations/conv_1/items"),
]


@pytest.fixture(autouse=True)
def _keys(settings: Any) -> None:
    settings.BACKEND_API_KEYS = [ACCESS_KEY, "ak-second-key-abcdefghijkl"]


@pytest.mark.parametrize("path", OPEN_PATHS)
async def test_it_leaves_liveness_and_docs_open(client: AsyncClient, path: str) -> None:
    response = await client.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 200


async def test_it_serves_the_docs_page_without_a_key(client: AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize(("method", "path"), GUARDED)
async def test_it_refuses_every_other_endpoint_without_a_key(
    client: AsyncClient, method: str, path: str
) -> None:
    response = await getattr(client, method)(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body.get("code") == "unauthorized" or body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong-key"},
        {"X-API-Key": "wrong-key"},
        {"Authorization": f"Basic {ACCESS_KEY}"},
    ],
)
async def test_it_refuses_a_wrong_key(client: AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get("/chat/conversations", headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "headers", [{"Authorization": f"Bearer {ACCESS_KEY}"}, {"X-API-Key": "ak-second-key-abcdefghijkl"}]
)
async def test_it_accepts_either_header(client: AsyncClient, headers: dict[str, str]) -> None:
    response = await client.post(
        "/chat/message", {"message": "hi"}, content_type="application/json", headers=headers
    )
    assert response.status_code == 200


async def completion(client: AsyncClient, headers: dict[str, str]) -> Any:
    return await client.post(
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}]},
        content_type="application/json",
        headers=headers,
    )


async def test_it_never_forwards_an_access_key_upstream(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_API_KEY = ""
    response = await completion(client, {"Authorization": f"Bearer {ACCESS_KEY}"})
    assert response.status_code == 200
    assert "authorization" not in fake_upstream.completions()[0].headers


async def test_it_lets_an_access_key_and_an_own_upstream_key_travel_together(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_API_KEY = ""
    response = await completion(
        client, {"X-API-Key": ACCESS_KEY, "Authorization": "Bearer sk-or-v1-users-own"}
    )
    assert response.status_code == 200
    assert fake_upstream.completions()[0].headers["authorization"] == "Bearer sk-or-v1-users-own"


async def test_it_documents_the_security_schemes(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    assert schema["paths"]["/chat/message"]["post"]["security"]
    assert "security" not in schema["paths"]["/health"]["get"]


async def test_it_hides_debug_endpoints_when_told(client: AsyncClient, settings: Any) -> None:
    settings.DEBUG_ENDPOINTS = False
    headers = {"X-API-Key": ACCESS_KEY}
    for path in ("/api/hf/environment", "/api/hf/debug", "/api/hf/logs"):
        assert (await client.get(path, headers=headers)).status_code == 404
    assert (await client.get("/api/hf/status", headers=headers)).status_code == 200
