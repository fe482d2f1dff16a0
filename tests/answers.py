"""Checks the endpoint tests share: the success and error shapes of an answer, and that no answer ever
shows the server's key. `call` and `ok` go in-process through the project's NinjaAPI (Django's
AsyncClient); `live_ok` is the same check over real HTTP, for the one live smoke test per router."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx
from django.test import AsyncClient

from tests.conftest import SECRET

# Every operation the API document names, as (method, path).
DOCUMENTED: list[tuple[str, str]] = [
    ("POST", "/chat/message"),
    ("POST", "/memory-chat/message"),
    ("POST", "/openrouter/test"),
    ("POST", "/test-chat/message"),
    ("GET", "/health"),
    ("GET", "/chat/health"),
    ("GET", "/memory-chat/health"),
    ("GET", "/openrouter/health"),
    ("GET", "/"),
    ("GET", "/chat/"),
    ("GET", "/memory-chat/"),
    ("GET", "/openrouter/"),
    ("GET", "/chat/models"),
    ("GET", "/openrouter/models"),
    ("GET", "/api/options/config"),
    ("GET", "/chat/conversations"),
    ("GET", "/memory-chat/conversations"),
    ("GET", "/chat/conversations/{id}"),
    ("GET", "/memory-chat/conversations/{id}"),
    ("DELETE", "/chat/conversations/{id}"),
    ("DELETE", "/memory-chat/conversations"),
    ("GET", "/api/hf/status"),
    ("GET", "/api/hf/ready"),
    ("GET", "/api/hf/environment"),
    ("GET", "/api/hf/debug"),
    ("GET", "/api/hf/logs"),
    ("POST", "/api/hf/test-conversation"),
    ("GET", "/api/simple/health"),
    ("POST", "/api/simple/conversation"),
]

DOCUMENTED_MODELS = {
    "openai/gpt-4o-mini",
    "openai/gpt-4o",
    "anthropic/claude-3.5-sonnet",
    "anthropic/claude-3-haiku",
    "google/gemini-pro",
    "meta-llama/llama-3.1-8b-instruct",
}

FAKE_USAGE_TOTAL = 19  # the fake upstream's usage for an ordinary completion: 12 + 7


def own_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def assert_iso(value: Any) -> None:
    assert isinstance(value, str)
    datetime.fromisoformat(value)


async def call(
    client: AsyncClient,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One in-process request; no answer may ever contain the server's key."""
    data = "" if json_body is None else json.dumps(json_body)
    response = await client.generic(
        method,
        path,
        data,
        content_type="application/json",
        query_params=params,
        headers=headers,
    )
    assert SECRET not in response.content.decode(errors="replace"), f"{method} {path} leaked the API key"
    return response


async def ok(client: AsyncClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """A 200 JSON object, in-process."""
    response = await call(client, method, path, **kwargs)
    assert response.status_code == 200, (method, path, response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    return body


def live_ok(http: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """A 200 JSON object over real HTTP; the answer must not contain the server's key."""
    response = http.request(method, path, **kwargs)
    assert SECRET not in response.text, f"{method} {path} leaked the API key"
    assert response.status_code == 200, (method, path, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    return body


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The error shape: {status: "error", code, message, timestamp}. Works for a Django test answer
    and an httpx one alike."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"] == "error"
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert_iso(body["timestamp"])
    if code is not None:
        assert body["code"] == code
    assert isinstance(body, dict)
    return body


def assert_conversation_not_found(response: Any) -> None:
    body = assert_error(response, 404, "conversation_not_found")
    assert body["message"] == "Conversation not found"
    assert set(body) == {"status", "code", "message", "timestamp", "request_id"}
