"""The model list: upstream's, cached; the last good copy on failure; else the built-in six."""

from __future__ import annotations

from django.test import AsyncClient

from gateway.catalog import BUILTIN_MODELS
from tests.fake_upstream import FakeUpstream, Reply, error_body


def model_calls(fake: FakeUpstream) -> int:
    return len([r for r in fake.requests if r.path.endswith("/models")])


async def test_it_serves_the_upstream_list_and_caches_it(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    first = (await client.get("/chat/models")).json()
    second = (await client.get("/openrouter/models")).json()
    assert first["source"] == "upstream"
    assert [m["id"] for m in first["models"]] == ["fake/alpha", "openai/gpt-4o-mini"]
    assert second["models"] == ["fake/alpha", "openai/gpt-4o-mini"] and second["total_models"] == 2
    assert model_calls(fake_upstream) == 1
    recommended = [m["id"] for m in first["models"] if m["recommended"]]
    assert recommended == ["openai/gpt-4o-mini"]


async def test_it_falls_back_to_the_builtin_list(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue_models(Reply(status=503, body=error_body(503, "down")))
    body = (await client.get("/chat/models")).json()
    assert body["source"] == "builtin"
    assert [m["id"] for m in body["models"]] == [m["id"] for m in BUILTIN_MODELS]
    assert len(body["models"]) == 6
    assert [m["id"] for m in body["models"] if m["recommended"]] == ["openai/gpt-4o-mini"]
    again = (await client.get("/openrouter/models")).json()
    assert again["source"] == "builtin"
    assert model_calls(fake_upstream) == 1  # a failure is not retried on every request


async def test_it_serves_the_last_good_copy_when_the_upstream_fails(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    from stores import get_store

    assert (await client.get("/chat/models")).json()["source"] == "upstream"
    store = get_store()
    await store.cache_set("models:fresh", None, 1)  # the fresh copy has expired
    fake_upstream.queue_models(Reply(body=b"garbage", headers={"Content-Type": "text/plain"}))
    body = (await client.get("/chat/models")).json()
    assert body["source"] == "stale"
    assert [m["id"] for m in body["models"]] == ["fake/alpha", "openai/gpt-4o-mini"]
