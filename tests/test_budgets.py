"""Token budgets (CLIENT_TOKEN_BUDGET, TOTAL_TOKEN_BUDGET): before each upstream call on the server's
key, its budgets hold what it may spend (its prompt, four characters a token, and its output cap),
refused with 429 budget_exceeded when that is more than is left; the upstream's usage settles it.

The fake upstream reports 19 tokens (12 + 7) for every answer. The output caps here are 8 tokens, so
a request holds some 12 to 20 before its answer settles it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from django.test import AsyncClient

from stores import reset_store
from tests.conftest import SECRET, LiveServer
from tests.fake_upstream import FakeUpstream, Reply, error_body

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
    settings.LLM_MAX_TOKENS = settings.LLM_MAX_TOKENS_LIMIT = 8
    settings.CHAT_SYSTEM_PROMPT = ""


async def chat(client: AsyncClient, headers: dict[str, str], **body: Any) -> Any:
    return await client.post(
        "/chat/message", {"message": "hi", **body}, content_type="application/json", headers=headers
    )


async def test_it_refuses_a_client_over_its_budget_and_no_other(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    settings.CLIENT_TOKEN_BUDGET = (50, DAY)
    assert [(await chat(client, ALICE)).status_code for _ in range(2)] == [200, 200]  # 19, then 38
    refused = await chat(client, ALICE)  # 38 and what it may spend are more than 50
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "budget_exceeded" and body["status"] == "error"
    assert "more than the 12 left of your token budget (50 per day)" in body["message"]
    assert 1 <= int(refused["Retry-After"]) <= DAY
    assert len(fake_upstream.requests) == 2
    assert (await chat(client, BOB)).status_code == 200


async def test_it_stores_nothing_for_a_refused_turn(client: AsyncClient, settings: Any) -> None:
    settings.CLIENT_TOKEN_BUDGET = (30, DAY)
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
    settings.TOTAL_TOKEN_BUDGET = (45, 3600)
    answered = 0
    while True:  # each from another client: 19 a call (14 a stream), while what one may spend fits
        headers = {"X-Forwarded-For": f"203.0.113.{answered + 1}"}
        answer: Any = await client.post(path, body, content_type="application/json", headers=headers)
        if answer.status_code == 429:
            break
        assert answer.status_code == 200 and answered < 3
        answered += 1
        if answer.streaming:  # counted when the stream ends
            assert b"completed" in b"".join([part async for part in answer.streaming_content])
    assert answered >= 2 and 1 <= int(answer["Retry-After"]) <= 3600
    used = (await client.get("/chat/health")).json()["budgets"]["total"]["used"]
    assert used == answered * (14 if body.get("stream") else 19)
    message = f"more than the {45 - used} left of this service's token budget (45 per hour)"
    if path.startswith("/v1/"):
        error = answer.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "budget_exceeded"
        assert message in error["message"] and error["param"] is None
    else:
        assert answer.json()["code"] == "budget_exceeded" and message in answer.json()["message"]


async def test_it_counts_streamed_replies_when_they_end(client: AsyncClient, settings: Any) -> None:
    settings.CLIENT_TOKEN_BUDGET = (30, DAY)  # a streamed reply reports 12 + one per chunk
    streamed = await chat(client, ALICE, stream=True)
    assert b"event: done" in b"".join([chunk async for chunk in streamed.streaming_content])
    assert (await client.get("/chat/health", headers=ALICE)).json()["budgets"]["client"]["used"] > 13
    assert (await chat(client, ALICE)).status_code == 429


async def test_it_neither_counts_nor_refuses_a_clients_own_upstream_key(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    settings.CLIENT_TOKEN_BUDGET = settings.TOTAL_TOKEN_BUDGET = (30, DAY)
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
    settings.CLIENT_TOKEN_BUDGET = (30, DAY)
    assert (await chat(client, {"X-API-Key": "ak-one-0123456789"})).status_code == 200
    assert (await chat(client, {"X-API-Key": "ak-one-0123456789"})).status_code == 429
    assert (await chat(client, {"X-API-Key": "ak-two-0123456789"})).status_code == 200
    health = await client.get("/chat/health", headers={"Authorization": "Bearer ak-one-0123456789"})
    assert health.json()["budgets"]["client"]["used"] == 19


COMPLETION = b'{"messages": [{"role": "user", "content": "hi"}]}'  # holds 50 // 4 + 8 = 20


async def completions(client: AsyncClient, headers: dict[str, str], body: bytes = COMPLETION) -> Any:
    return await client.post("/v1/chat/completions", body, content_type="application/json", headers=headers)


async def used(client: AsyncClient, headers: dict[str, str]) -> int:
    return int((await client.get("/chat/health", headers=headers)).json()["budgets"]["client"]["used"])


async def test_calls_at_once_never_spend_past_a_budget_together(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    """Each call holds what it may spend before it goes upstream: of twelve at once against 100 tokens,
    only as many as 100 can hold go (they used to all go, each seeing the budget unspent)."""
    settings.CLIENT_TOKEN_BUDGET = (100, DAY)
    fake_upstream.queue(*[Reply(delay=0.3) for _ in range(12)])  # all in flight together
    answers = await asyncio.gather(*(completions(client, ALICE) for _ in range(12)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 5 + [429] * 7  # 5 x 20 held
    assert len(fake_upstream.completions()) == 5
    assert await used(client, ALICE) == 5 * 19  # each settled at its usage


async def test_a_call_bigger_than_what_is_left_never_goes_upstream(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    settings.CLIENT_TOKEN_BUDGET = (100, DAY)
    big = b'{"messages": [{"role": "user", "content": "' + b"word " * 100 + b'"}]}'
    refused = await completions(client, ALICE, big)
    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert "may use about 144 tokens" in message and "more than your whole token budget" in message, message
    assert fake_upstream.completions() == [] and await used(client, ALICE) == 0


async def test_a_call_the_upstream_refuses_costs_nothing(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    settings.CLIENT_TOKEN_BUDGET = (100, DAY)
    fake_upstream.queue(Reply(status=400, body=error_body(400, "bad request")))
    assert (await completions(client, ALICE)).status_code == 400
    assert await used(client, ALICE) == 0


async def test_a_call_whose_usage_never_comes_is_charged_what_it_held(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    """An upstream that reports no usage, a stream cut before its usage: what the call held stays
    charged (it used to be charged nothing)."""
    settings.CLIENT_TOKEN_BUDGET = (1000, DAY)
    plain = {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
        ],
    }
    fake_upstream.queue(Reply(body=plain))
    assert (await completions(client, ALICE)).status_code == 200
    assert await used(client, ALICE) == 20
    fake_upstream.queue(Reply(chunks=["a", "b", "c"], stream_cut_after=2))
    streamed = b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}'  # 64 // 4 + 8
    answer: Any = await completions(client, ALICE, streamed)
    b"".join([part async for part in answer.streaming_content])
    assert await used(client, ALICE) == 20 + 24


async def test_a_client_that_leaves_mid_call_is_charged_what_it_held(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    """The provider answers (and bills) a call whose client has gone: it is charged what it held, and
    counted in the statistics (it used to be neither)."""
    settings.CLIENT_TOKEN_BUDGET = (1000, DAY)
    before = (await client.get("/chat/health")).json()["usage"]["requests"]
    fake_upstream.queue(Reply(delay=1.0))
    call = asyncio.create_task(completions(client, ALICE))
    for _ in range(500):  # until the call is upstream
        if fake_upstream.completions():
            break
        await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await used(client, ALICE) == 20
    assert (await client.get("/chat/health")).json()["usage"]["requests"] == before + 1


async def test_a_long_conversation_holds_its_history_before_its_call(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    """The history a turn sends is not in its body: just before the call its budgets hold the rest (one
    more store round trip), and a turn whose history does not fit never goes upstream."""
    settings.CLIENT_TOKEN_BUDGET = (130, DAY)
    assert (await chat(client, ALICE, message="x" * 400, conversation_id="long")).status_code == 200
    assert await used(client, ALICE) == 19
    refused = await chat(client, ALICE, conversation_id="long")
    assert refused.status_code == 429 and "your whole token budget (130 per day)" in refused.json()["message"]
    assert len(fake_upstream.completions()) == 1
    assert await used(client, ALICE) == 19  # what the refused turn held went back
    assert (await chat(client, ALICE, conversation_id="short")).status_code == 200


def test_a_request_that_never_makes_its_call_gives_back_what_it_held(fake_upstream: FakeUpstream) -> None:
    """Through the edge (a real server): a request refused after its admission (here an unknown
    previous_response_id, 404) gives back what its budgets held when it ends."""
    env = {"LLM_BASE_URL": fake_upstream.url, "LLM_API_KEY": SECRET, "CLIENT_TOKEN_BUDGET": "10000/day"}
    server = LiveServer(env)
    try:
        missing = {"model": "m", "input": "hi", "previous_response_id": "resp_missing"}
        assert httpx.post(f"{server.url}/v1/responses", json=missing).status_code == 404
        health = httpx.get(f"{server.url}/chat/health").json()
        assert health["budgets"]["client"]["used"] == 0
        assert httpx.post(f"{server.url}/v1/responses", json={"model": "m", "input": "hi"}).status_code == 200
        assert httpx.get(f"{server.url}/chat/health").json()["budgets"]["client"]["used"] == 19
    finally:
        server.stop()


async def test_an_uncapped_call_holds_the_default_answer_and_one_that_never_fits_says_so(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    """A /v1 call with no cap holds LLM_MAX_TOKENS (it used to hold LLM_MAX_TOKENS_LIMIT, refusing
    every such call on a smaller budget); one no window can hold says so, with no Retry-After; the
    larger of two caps is held, as an upstream may honour either (second review)."""
    settings.LLM_MAX_TOKENS, settings.LLM_MAX_TOKENS_LIMIT = 1000, 4096
    settings.CLIENT_TOKEN_BUDGET = (2000, 3600)
    assert (await completions(client, ALICE)).status_code == 200
    both = (
        b'{"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 1, "max_tokens": 4000}'
    )
    refused = await completions(client, ALICE, both)
    assert refused.status_code == 429 and "Retry-After" not in refused
    assert "more than your whole token budget (2000 per hour)" in refused.json()["error"]["message"]
    assert len(fake_upstream.completions()) == 1


@pytest.mark.parametrize("store", ["local", "redis"])
async def test_a_cap_too_large_is_refused_before_anything_is_held(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream, request: Any, store: str
) -> None:
    """A cap past LLM_MAX_TOKENS_LIMIT is a 400 before admission: held, 10**18 made Redis refuse the
    script (503 store_unavailable) and the local store answer 429 (second review)."""
    if store == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_server").url.replace("/0", "/7")
        reset_store()
    settings.CLIENT_TOKEN_BUDGET = (100000, DAY)
    try:
        for path, body in (
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**18}),
            ("/v1/responses", {"input": "hi", "max_output_tokens": 10**18}),
        ):
            answer = await client.post(path, body, content_type="application/json")
            assert answer.status_code == 400 and answer.json()["error"]["code"] == "max_tokens_too_large"
        assert fake_upstream.completions() == []
    finally:
        if store == "redis":
            settings.REDIS_URL = ""
            reset_store()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a very long story"}]}),
        ("/v1/responses", {"input": "a very long story"}),
    ],
)
async def test_an_uncapped_v1_call_is_sent_the_cap_its_budgets_hold(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    """Held for LLM_MAX_TOKENS, it went upstream with no cap: a provider writes up to its model's whole
    output window (16k and more), so four calls at once spent 4.8x the service's daily budget, and
    LLM_MAX_TOKENS_LIMIT never applied (review)."""
    settings.LLM_MAX_TOKENS, settings.LLM_MAX_TOKENS_LIMIT = 1000, 1000
    settings.CLIENT_TOKEN_BUDGET = settings.TOTAL_TOKEN_BUDGET = (5000, DAY)
    fake_upstream.queue(*[Reply(content="x", delay=0.3) for _ in range(4)])
    answers = await asyncio.gather(
        *(client.post(path, body, content_type="application/json", headers=ALICE) for _ in range(4))
    )
    assert [a.status_code for a in answers] == [200] * 4
    assert [r.body.get("max_tokens") for r in fake_upstream.completions()] == [1000] * 4


async def test_an_uncapped_call_with_a_reasoning_budget_is_sent_room_beyond_it(
    client: AsyncClient, settings: Any, fake_upstream: FakeUpstream
) -> None:
    """Its reasoning budget counts within max_tokens (Anthropic refuses a max_tokens not above it): the
    cap filled in was LLM_MAX_TOKENS alone, below a 2,000-token budget (review)."""
    settings.LLM_MAX_TOKENS, settings.LLM_MAX_TOKENS_LIMIT = 1000, 4096
    settings.CLIENT_TOKEN_BUDGET = (100000, DAY)
    body = {"messages": [{"role": "user", "content": "prove it"}], "reasoning": {"max_tokens": 2000}}
    assert (
        await client.post("/v1/chat/completions", body, content_type="application/json")
    ).status_code == 200
    sent = fake_upstream.completions()[0].body
    assert sent["reasoning"] == {"max_tokens": 2000} and sent["max_tokens"] == 3000
