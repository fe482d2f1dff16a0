"""Token budgets (CLIENT_TOKEN_BUDGET, TOTAL_TOKEN_BUDGET): counted from the upstream's usage, checked
before each upstream call on the server's key, refused with 429 budget_exceeded until the window resets.

The fake upstream reports 19 tokens (12 + 7) for every answer.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream

DAY = 86400
ALICE = {"X-Forwarded-For": "203.0.113.1"}
BOB = {"X-Forwarded-For": "203.0.113.2"}
CALLS = [
    ("/chat/message", {"message": "hi"}),
    ("/openrouter/test", {"message": "hi"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/responses", {"input": "hi"}),
    ("/v1/responses", {"input": "hi", "stream": True}),
]


@pytest.fixture(autouse=True)
def _behind_one_proxy(settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 1


async def chat(client: AsyncClient, headers: dict[str, str], **body: Any) -> Any:
    return await client.post(
        "/chat/message", {"message": "hi", **body}, content_type="application/json", headers=headers
    )


async def test_it_refuses_a_client_over_its_budget_and_no_other(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    settings.CLIENT_TOKEN_BUDGET = (30, DAY)
    assert [(await chat(client, ALICE)).status_code for _ in range(2)] == [200, 200]  # 19, then 38
    refused = await chat(client, ALICE)
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "budget_exceeded" and body["status"] == "error"
    assert "30 per day" in body["message"]
    assert 1 <= int(refused["Retry-After"]) <= DAY
    assert len(fake_upstream.requests) == 2
    assert (await chat(client, BOB)).status_code == 200


async def test_it_stores_nothing_for_a_refused_turn(client: AsyncClient, settings: Any) -> None:
    settings.CLIENT_TOKEN_BUDGET = (10, DAY)
    assert (await chat(client, ALICE, conversation_id="kept")).status_code == 200
    assert (await chat(client, ALICE, conversation_id="kept")).status_code == 429
    assert (await chat(client, ALICE, conversation_id="never")).status_code == 429
    kept = (await client.get("/chat/conversations/kept")).json()["conversation"]
    assert kept["message_count"] == 2
    assert (await client.get("/chat/conversations/never")).status_code == 404


@pytest.mark.parametrize(("path", "body"), CALLS)
async def test_the_total_budget_stops_everyone(
    client: AsyncClient, settings: Any, path: str, body: dict[str, Any]
) -> None:
    settings.TOTAL_TOKEN_BUDGET = (40, 3600)
    for headers in (ALICE, BOB, {"X-Forwarded-For": "203.0.113.3"}):  # 19, 38, 57
        ok: Any = await client.post(path, body, content_type="application/json", headers=headers)
        assert ok.status_code == 200
        if ok.streaming:  # counted when the stream ends
            assert b"completed" in b"".join([part async for part in ok.streaming_content])
    refused = await client.post(
        path, body, content_type="application/json", headers={"X-Forwarded-For": "192.0.2.9"}
    )
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 3600
    if path.startswith("/v1/"):
        assert refused.json() == {
            "error": {
                "message": "This service's token budget (40 per hour) is spent; try again in "
                f"{refused['Retry-After']} seconds.",
                "type": "rate_limit_error",
                "code": "budget_exceeded",
                "param": None,
            }
        }
    else:
        assert refused.json()["code"] == "budget_exceeded"


async def test_it_counts_streamed_replies_when_they_end(client: AsyncClient, settings: Any) -> None:
    settings.CLIENT_TOKEN_BUDGET = (13, DAY)  # a streamed reply reports 12 + one per chunk
    streamed = await chat(client, ALICE, stream=True)
    assert b"event: done" in b"".join([chunk async for chunk in streamed.streaming_content])
    assert (await client.get("/chat/health", headers=ALICE)).json()["budgets"]["client"]["used"] > 13
    assert (await chat(client, ALICE)).status_code == 429


async def test_it_neither_counts_nor_refuses_a_clients_own_upstream_key(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    settings.CLIENT_TOKEN_BUDGET = settings.TOTAL_TOKEN_BUDGET = (19, DAY)
    own = {"api_key": "sk-or-v1-the-clients-own-key"}
    assert [(await chat(client, ALICE, **own)).status_code for _ in range(3)] == [200, 200, 200]
    assert (await chat(client, ALICE)).status_code == 200
    assert (await chat(client, ALICE)).status_code == 429
    assert (await chat(client, ALICE, **own)).status_code == 200


async def test_it_shows_budget_use_in_chat_health(client: AsyncClient, settings: Any) -> None:
    assert (await client.get("/chat/health")).json()["budgets"] == {"total": None, "client": None}
    settings.CLIENT_TOKEN_BUDGET = (1000, DAY)
    settings.TOTAL_TOKEN_BUDGET = (5000, 3600)
    await chat(client, ALICE)
    await chat(client, BOB)
    budgets = (await client.get("/chat/health", headers=ALICE)).json()["budgets"]
    assert budgets["total"]["used"] == 38 and budgets["total"]["limit"] == 5000
    assert budgets["client"]["used"] == 19 and budgets["client"]["limit"] == 1000
    assert 1 <= budgets["total"]["resets_in"] <= 3600 and 1 <= budgets["client"]["resets_in"] <= DAY
    fresh = (await client.get("/chat/health", headers={"X-Forwarded-For": "192.0.2.1"})).json()["budgets"]
    assert fresh["client"]["used"] == 0


async def test_it_counts_an_access_key_as_its_own_client(client: AsyncClient, settings: Any) -> None:
    settings.BACKEND_API_KEYS = ["ak-one-0123456789", "ak-two-0123456789"]
    settings.CLIENT_TOKEN_BUDGET = (19, DAY)
    assert (await chat(client, {"X-API-Key": "ak-one-0123456789"})).status_code == 200
    assert (await chat(client, {"X-API-Key": "ak-one-0123456789"})).status_code == 429
    assert (await chat(client, {"X-API-Key": "ak-two-0123456789"})).status_code == 200
    health = await client.get("/chat/health", headers={"Authorization": "Bearer ak-one-0123456789"})
    assert health.json()["budgets"]["client"]["used"] == 19
