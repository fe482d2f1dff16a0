"""Every way the upstream can fail maps to one clear answer, and nothing is stored; its error text is not
passed on, and impossible token counts in a reply are counted as none."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient

from tests.answers import assert_error, call
from tests.conftest import SECRET
from tests.fake_upstream import FakeUpstream, Reply, error_body

CASES = [
    (Reply(status=401, body=error_body(401, "No auth credentials found")), 401, "upstream_unauthorized"),
    (Reply(status=402, body=error_body(402, "Insufficient credits")), 402, "upstream_payment_required"),
    (Reply(status=403, body=error_body(403, "Flagged by moderation")), 403, "upstream_forbidden"),
    (Reply(status=429, body=error_body(429, "Rate limited")), 429, "upstream_rate_limited"),
    (Reply(status=408, body=error_body(408, "Timed out")), 504, "upstream_timeout"),
    (Reply(status=500, body=error_body(500, "boom")), 502, "upstream_error"),
    (Reply(status=502, body=error_body(502, "model down")), 502, "upstream_error"),
    (Reply(status=503, body=error_body(503, "no provider")), 502, "upstream_error"),
    (Reply(status=400, body=error_body(400, "bad model")), 400, "upstream_bad_request"),
    (Reply(drop=True), 502, "upstream_unreachable"),
    (
        Reply(body=b"<html>gateway</html>", headers={"Content-Type": "text/html"}),
        502,
        "upstream_invalid_response",
    ),
    (Reply(body={"id": "x", "object": "chat.completion"}), 502, "upstream_invalid_response"),
    (Reply(body={"error": {"code": 502, "message": "provider died"}}), 502, "upstream_error"),
    (
        Reply(
            body={
                "choices": [
                    {"index": 0, "finish_reason": "error", "message": {"role": "assistant", "content": ""}}
                ],
                "error": {"code": "server_error", "message": "mid-generation failure"},
            }
        ),
        502,
        "upstream_error",
    ),
]


async def post(client: AsyncClient, body: dict[str, Any]) -> Any:
    return await client.post("/chat/message", body, content_type="application/json")


@pytest.mark.parametrize(("reply", "status", "code"), CASES)
async def test_it_maps_each_upstream_failure(
    client: AsyncClient, fake_upstream: FakeUpstream, reply: Reply, status: int, code: str
) -> None:
    fake_upstream.queue(reply)
    response = await post(client, {"message": "hello", "conversation_id": "conv-err"})
    assert response.status_code == status
    body = response.json()
    assert body["status"] == "error"
    assert body["code"] == code
    assert body["message"] and body["timestamp"]
    text = response.content.decode()
    for leaked in (
        SECRET,
        "provider died",
        "mid-generation failure",
        "model down",
        "no provider",
        "Rate limited",
        "Insufficient credits",
        "boom",
        "<html>",
        "Traceback",
        "scripted error",
    ):
        assert leaked not in text
    stored = await client.get("/chat/conversations/conv-err")
    assert stored.status_code == 404


async def test_it_passes_retry_after_on_429(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(status=429, body=error_body(429, "slow down"), headers={"Retry-After": "7"}))
    response = await post(client, {"message": "hello"})
    assert response.status_code == 429
    assert response["Retry-After"] == "7"


async def test_it_answers_504_when_the_upstream_is_too_slow(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_TIMEOUT = 1.0
    fake_upstream.queue(Reply(delay=2.5))
    response = await post(client, {"message": "hello"})
    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"


async def test_it_keeps_a_conversation_unchanged_when_a_later_call_fails(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    first = await post(client, {"message": "one", "conversation_id": "keep-me"})
    assert first.status_code == 200
    before = (await client.get("/chat/conversations/keep-me")).json()["conversation"]
    fake_upstream.queue(Reply(status=502, body=error_body(502, "down")))
    failed = await post(client, {"message": "two", "conversation_id": "keep-me"})
    assert failed.status_code == 502
    after = (await client.get("/chat/conversations/keep-me")).json()["conversation"]
    assert after == before
    assert [m["role"] for m in after["messages"]] == ["user", "assistant"]


async def test_it_counts_errors_by_kind(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(status=429, body=error_body(429, "x")))
    await post(client, {"message": "a"})
    await post(client, {"message": "b"})
    usage = (await client.get("/chat/health")).json()["usage"]
    assert usage["requests"] == 2
    assert usage["errors"] == 1
    assert usage["errors_by_kind"] == {"upstream_rate_limited": 1}
    assert usage["error_rate"] == 0.5


async def test_it_does_not_pass_on_upstream_error_text(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(
        Reply(status=400, body={"error": {"code": 400, "message": f"bad key {SECRET} raw-upstream-text"}})
    )
    response = await call(client, "POST", "/chat/message", json_body={"message": "fail please"})
    body = assert_error(response, 400)
    assert "raw-upstream-text" not in response.content.decode()
    assert set(body) >= {"status", "code", "message", "timestamp"}


async def test_it_ignores_impossible_token_counts(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    body = {
        "choices": [{"message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1e308, "completion_tokens": -5, "total_tokens": 10**30},
    }
    fake_upstream.queue(Reply(body=body))
    response = await post(client, {"message": "q", "conversation_id": "odd"})
    assert response.status_code == 200
    assert response.json()["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for path in ("/chat/conversations", "/chat/conversations/odd", "/chat/health", "/api/hf/status"):
        assert (await client.get(path)).status_code == 200, path
