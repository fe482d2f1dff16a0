"""Two server processes on a real three-master Redis Cluster (REDIS_CLUSTER=true): a conversation
continues on the other process and no concurrent message is lost; every key of the store shares one
hash tag, so each script's keys are in one slot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.conftest import SECRET, LiveServer, RedisCluster
from tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def two_servers(fake_upstream: FakeUpstream, redis_cluster: RedisCluster) -> Iterator[tuple[str, str]]:
    env = {
        "LLM_BASE_URL": fake_upstream.url,
        "LLM_API_KEY": SECRET,
        "REDIS_URL": redis_cluster.url,
        "REDIS_CLUSTER": "true",
        "LLM_MAX_RETRIES": "0",
        "RATE_LIMIT": "100000/minute",
        "CLIENT_TOKEN_BUDGET": "100000000/day",
    }
    first, second = LiveServer(env), LiveServer(env)
    yield first.url, second.url
    first.stop()
    second.stop()


def test_it_keeps_every_concurrent_message_across_processes(two_servers: tuple[str, str]) -> None:
    one, two = two_servers

    async def post_all() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [
                client.post(
                    f"{(one, two)[n % 2]}/chat/message",
                    json={"message": f"msg-{n}", "conversation_id": "cluster-crowd"},
                )
                for n in range(50)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(post_all()) == [200] * 50
    conversation = httpx.get(f"{one}/chat/conversations/cluster-crowd").json()["conversation"]
    messages = conversation["messages"]
    assert conversation["message_count"] == 100 and len(messages) == 100
    for user, reply in zip(messages[::2], messages[1::2], strict=True):
        assert reply["content"] == f"Fake reply to: {user['content']}"
    assert sorted(m["content"] for m in messages[::2]) == sorted(f"msg-{n}" for n in range(50))


def test_it_continues_a_conversation_and_a_response_on_the_other_process(
    two_servers: tuple[str, str],
) -> None:
    one, two = two_servers
    assert (
        httpx.post(f"{one}/chat/message", json={"message": "a", "conversation_id": "hop"}).status_code == 200
    )
    assert (
        httpx.post(f"{two}/chat/message", json={"message": "b", "conversation_id": "hop"}).json()[
            "message_count"
        ]
        == 4
    )
    first = httpx.post(f"{one}/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "x"}).json()
    second = httpx.post(
        f"{two}/v1/responses",
        json={"model": "openai/gpt-4o-mini", "input": "y", "previous_response_id": first["id"]},
    )
    assert second.status_code == 200
    assert httpx.get(f"{one}/v1/responses/{second.json()['id']}").status_code == 200


def test_it_keeps_every_key_under_one_hash_tag(
    two_servers: tuple[str, str], redis_cluster: RedisCluster
) -> None:
    one, _ = two_servers
    httpx.post(f"{one}/chat/message", json={"message": "tagged"})
    client = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        keys = list(client.scan_iter(match="*"))
        assert keys and all(k.startswith(b"{gw}:") for k in keys)
        assert len({client.keyslot(k) for k in keys}) == 1
    finally:
        client.close()
