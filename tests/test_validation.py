"""Bad input (fields, bodies, paging, an unknown path, a wrong method): a clear 4xx in the error shape, no
echo of the input (not even the path of a 404, nor a key sent in the body), nothing stored changed."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient

from tests.answers import assert_error, call
from tests.conftest import SECRET
from tests.fake_upstream import FakeUpstream

BAD_BODIES = [
    ({}, "message"),
    ({"message": ""}, "message"),
    ({"message": "   "}, "message"),
    ({"message": 5}, "message"),
    ({"message": "hi", "temperature": 2.5}, "temperature"),
    ({"message": "hi", "temperature": "hot"}, "temperature"),
    ({"message": "hi", "max_tokens": 0}, "max_tokens"),
    ({"message": "hi", "conversation_id": "../../etc/passwd"}, "conversation_id"),
    ({"message": "hi", "conversation_id": "x" * 200}, "conversation_id"),
    ({"message": "hi", "model": "bad model with spaces"}, "model"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_it_rejects_bad_fields(
    client: AsyncClient, fake_upstream: FakeUpstream, body: dict[str, Any], field: str
) -> None:
    body = {**body, "api_key": "sk-or-v1-echo-canary"}
    response = await client.post("/chat/message", body, content_type="application/json")
    assert response.status_code == 422
    payload = response.json()
    assert payload["status"] == "error" and payload["code"] == "validation_error"
    assert field in [e["field"] for e in payload["errors"]]
    assert "sk-or-v1-echo-canary" not in response.content.decode()
    assert fake_upstream.requests == []


async def test_it_rejects_an_overlong_message(client: AsyncClient, settings: Any) -> None:
    body = {"message": "x" * (settings.MESSAGE_MAX_CHARS + 1)}
    response = await client.post("/chat/message", body, content_type="application/json")
    assert response.status_code == 422
    assert "x" * 50 not in response.content.decode()


async def test_it_caps_max_tokens(client: AsyncClient, fake_upstream: FakeUpstream, settings: Any) -> None:
    body = {"message": "hi", "max_tokens": settings.LLM_MAX_TOKENS_LIMIT + 1}
    response = await client.post("/chat/message", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "max_tokens_too_large"
    assert fake_upstream.requests == []


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"null", b"\xff\xfe"])
async def test_it_rejects_a_body_that_is_not_an_object(client: AsyncClient, raw: bytes) -> None:
    response = await client.post("/chat/message", raw, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert response.json()["status"] == "error"


async def test_it_leaves_stored_conversations_alone_on_bad_input(client: AsyncClient) -> None:
    ok = await client.post(
        "/memory-chat/message",
        {"message": "keep", "conversation_id": "safe"},
        content_type="application/json",
    )
    assert ok.status_code == 200
    bad = await client.post(
        "/memory-chat/message", {"message": "", "conversation_id": "safe"}, content_type="application/json"
    )
    assert bad.status_code == 422
    messages = (await client.get("/memory-chat/conversations/safe")).json()["conversation"]["messages"]
    assert [m["content"] for m in messages] == ["keep", "Echo from memory chat: keep"]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "offset=-1", "limit=abc", "offset=99999999999999999999999"]
)
async def test_it_rejects_bad_paging(client: AsyncClient, query: str) -> None:
    response = await client.get(f"/chat/conversations?{query}")
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_it_answers_a_wrong_method_in_the_error_shape(client: AsyncClient) -> None:
    response = await client.put("/chat/message", {}, content_type="application/json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert "POST" in response["Allow"]


async def test_it_answers_an_unknown_path_in_the_error_shape(client: AsyncClient) -> None:
    response = await call(client, "GET", "/no/such/endpoint")
    body = assert_error(response, 404)
    assert response["Content-Type"].startswith("application/json")
    assert body["code"] != "conversation_not_found"


async def test_it_does_not_echo_the_request_key_in_a_validation_error(client: AsyncClient) -> None:
    response = await call(
        client, "POST", "/chat/message", json_body={"api_key": SECRET, "max_tokens": "many"}
    )
    assert_error(response, 422)


async def test_it_echoes_no_path_in_a_404(client: AsyncClient) -> None:
    response = await client.get("/nonexistent/<script>")
    assert response.status_code == 404 and "<script>" not in response.content.decode()
