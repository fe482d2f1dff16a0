"""Two server processes sharing one real Redis: a conversation continues on the other process, no
concurrent message is lost, usage figures and the rate limit are shared; while Redis is down the
answer is 503, and the service recovers when it comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, LiveServer, RedisServer, require_program
from tests.fake_upstream import FakeUpstream


def server_env(fake: FakeUpstream, redis_url: str) -> dict[str, str]:
    return {
        "LLM_BASE_URL": fake.url,
        "LLM_API_KEY": SECRET,
        "REDIS_URL": redis_url,
        "LLM_MAX_RETRIES": "0",
        "RATE_LIMIT": "0",
    }


@pytest.fixture(scope="module")
def two_servers(fake_upstream: FakeUpstream, redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    first = LiveServer(server_env(fake_upstream, redis_server.url.replace("/0", "/1")))
    second = LiveServer(server_env(fake_upstream, redis_server.url.replace("/0", "/1")))
    yield first.url, second.url
    first.stop()
    second.stop()


def test_it_continues_a_conversation_on_the_other_process(two_servers: tuple[str, str]) -> None:
    one, two = two_servers
    started = httpx.post(
        f"{one}/chat/message", json={"message": "first", "conversation_id": "hop"}, timeout=10
    )
    assert started.status_code == 200
    continued = httpx.post(
        f"{two}/chat/message", json={"message": "second", "conversation_id": "hop"}, timeout=10
    )
    assert continued.json()["message_count"] == 4
    messages = httpx.get(f"{one}/chat/conversations/hop").json()["conversation"]["messages"]
    assert [m["content"] for m in messages[::2]] == ["first", "second"]


def test_it_keeps_every_concurrent_message_across_processes(
    two_servers: tuple[str, str], fake_upstream: FakeUpstream
) -> None:
    one, two = two_servers

    async def post_all() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [
                client.post(
                    f"{(one, two)[n % 2]}/chat/message",
                    json={"message": f"msg-{n}", "conversation_id": "crowd"},
                )
                for n in range(50)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(post_all()) == [200] * 50
    conversation = httpx.get(f"{two}/chat/conversations/crowd").json()["conversation"]
    messages = conversation["messages"]
    assert conversation["message_count"] == 100 and len(messages) == 100
    for user, reply in zip(messages[::2], messages[1::2], strict=True):
        assert user["role"] == "user" and reply["role"] == "assistant"
        assert reply["content"] == f"Fake reply to: {user['content']}"
    assert sorted(m["content"] for m in messages[::2]) == sorted(f"msg-{n}" for n in range(50))


def test_it_shares_usage_figures(two_servers: tuple[str, str]) -> None:
    one, two = two_servers
    before = httpx.get(f"{one}/chat/health").json()["usage"]["requests"]
    httpx.post(f"{two}/chat/message", json={"message": "count me"}, timeout=10)
    assert httpx.get(f"{one}/chat/health").json()["usage"]["requests"] == before + 1


def test_it_answers_503_while_redis_is_down_and_recovers(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    redis = RedisServer(require_program("redis-server", "redis-server"), tmp_path).start()
    server = LiveServer(server_env(fake_upstream, redis.url))
    try:
        base = server.url
        assert (
            httpx.post(f"{base}/chat/message", json={"message": "a", "conversation_id": "r"}).status_code
            == 200
        )
        redis.stop()
        for method, path, body in (
            ("GET", "/api/hf/ready", None),
            ("POST", "/chat/message", {"message": "b", "conversation_id": "r"}),
            ("POST", "/memory-chat/message", {"message": "b"}),
            ("GET", "/chat/conversations", None),
        ):
            started = time.monotonic()
            response = httpx.request(method, f"{base}{path}", json=body, timeout=10)
            assert response.status_code == 503, path
            assert time.monotonic() - started < 1.0, path
            if path != "/api/hf/ready":
                assert response.json()["code"] == "store_unavailable"
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.get(f"{base}/chat/health").status_code == 200
        redis.start()
        deadline = time.monotonic() + 5
        while httpx.get(f"{base}/api/hf/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(f"{base}/api/hf/ready").status_code == 200
        again = httpx.post(f"{base}/chat/message", json={"message": "c", "conversation_id": "fresh"})
        assert again.status_code == 200
    finally:
        server.stop()
        redis.stop()


def test_it_holds_the_rate_limit_across_processes(
    fake_upstream: FakeUpstream, redis_server: RedisServer
) -> None:
    env = {**server_env(fake_upstream, redis_server.url.replace("/0", "/2")), "RATE_LIMIT": "4/hour"}
    first, second = LiveServer(env), LiveServer(env)
    try:
        statuses = [
            httpx.post(
                f"{(first, second)[n % 2].url}/chat/message", json={"message": "x"}, timeout=10
            ).status_code
            for n in range(6)
        ]
        assert statuses == [200, 200, 200, 200, 429, 429]
    finally:
        first.stop()
        second.stop()


def test_it_holds_token_budgets_across_processes(
    fake_upstream: FakeUpstream, redis_server: RedisServer
) -> None:
    env = {
        **server_env(fake_upstream, redis_server.url.replace("/0", "/3")),
        "CLIENT_TOKEN_BUDGET": "70/day",  # a turn holds some 45 to 65 tokens (an 8-token cap), uses 19
        "LLM_MAX_TOKENS": "8",
    }
    first, second = LiveServer(env), LiveServer(env)
    try:
        assert httpx.post(f"{first.url}/chat/message", json={"message": "x"}, timeout=10).status_code == 200
        with httpx.stream(
            "POST", f"{second.url}/chat/message", json={"message": "y", "stream": True}, timeout=10
        ) as streamed:
            assert "event: done" in streamed.read().decode()
        refused = httpx.post(f"{first.url}/chat/message", json={"message": "z"}, timeout=10)
        assert refused.status_code == 429 and refused.json()["code"] == "budget_exceeded"
        budgets = httpx.get(f"{second.url}/chat/health").json()["budgets"]
        assert budgets["client"]["used"] > 30 and budgets["total"] is None
    finally:
        first.stop()
        second.stop()


def test_it_keeps_responses_and_conversations_across_processes(
    two_servers: tuple[str, str], fake_upstream: FakeUpstream
) -> None:
    import openai

    headers = {"X-Client-Token": "shared-store-token-0123456789abcdef"}
    one, two = (
        openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, default_headers=headers)
        for url in two_servers
    )
    first = one.responses.create(model="openai/gpt-4o-mini", input="one")
    second = two.responses.create(model="openai/gpt-4o-mini", input="two", previous_response_id=first.id)
    assert [m["content"] for m in fake_upstream.completions()[-1].body["messages"]] == [
        "one",
        "Fake reply to: one",
        "two",
    ]
    assert two.responses.retrieve(first.id).output_text == "Fake reply to: one"
    one.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        two.responses.retrieve(second.id)
    conversation = one.conversations.create(metadata={"where": "redis"})
    two.responses.create(model="openai/gpt-4o-mini", input="hello", conversation=conversation.id)
    listed = one.conversations.items.list(conversation.id, order="asc")
    assert [item.role for item in listed.data] == ["user", "assistant"]  # type: ignore[union-attr]
    two.conversations.items.delete(str(listed.data[0].id), conversation_id=conversation.id)
    assert [i.id for i in one.conversations.items.list(conversation.id)] == [listed.data[1].id]
    assert two.conversations.retrieve(conversation.id).metadata == {"where": "redis"}
