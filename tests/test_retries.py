"""A resilient upstream: transient failures retried, permanent ones not, fallback models last."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream, Reply, error_body


@pytest.fixture(autouse=True)
def _retrying(settings: Any) -> None:
    settings.LLM_MAX_RETRIES = 2
    settings.LLM_RETRY_MAX_WAIT = 0.2


async def send(client: AsyncClient, **extra: Any) -> Any:
    return await client.post("/chat/message", {"message": "hi", **extra}, content_type="application/json")


async def test_it_hides_a_flaky_upstream(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(status=503, body=error_body(503, "x")), Reply(drop=True))
    response = await send(client)
    assert response.status_code == 200
    assert len(fake_upstream.completions()) == 3


async def test_it_waits_out_retry_after(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_RETRY_MAX_WAIT = 10
    fake_upstream.queue(Reply(status=429, body=error_body(429, "x"), headers={"Retry-After": "1"}))
    started = time.monotonic()
    response = await send(client)
    assert response.status_code == 200
    assert time.monotonic() - started >= 1.0
    assert len(fake_upstream.completions()) == 2


async def test_it_gives_up_when_retry_after_is_too_long(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_RETRY_MAX_WAIT = 1
    fake_upstream.queue(Reply(status=429, body=error_body(429, "x"), headers={"Retry-After": "30"}))
    response = await send(client)
    assert response.status_code == 429 and response["Retry-After"] == "30"
    assert len(fake_upstream.completions()) == 1


@pytest.mark.parametrize("status", [400, 401, 402, 403])
async def test_it_never_retries_a_permanent_failure(
    client: AsyncClient, fake_upstream: FakeUpstream, status: int
) -> None:
    fake_upstream.queue(*[Reply(status=status, body=error_body(status, "no")) for _ in range(3)])
    response = await send(client)
    assert response.status_code == status
    assert len(fake_upstream.completions()) == 1


async def test_it_stops_after_its_retries(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(*[Reply(status=502, body=error_body(502, "down")) for _ in range(5)])
    response = await send(client)
    assert response.status_code == 502
    assert len(fake_upstream.completions()) == 3


async def test_it_falls_back_to_the_next_model(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_FALLBACK_MODELS = ["fake/backup-one", "fake/backup-two"]
    fake_upstream.queue(*[Reply(status=503, body=error_body(503, "down")) for _ in range(6)])
    response = await send(client, model="fake/primary")
    assert response.status_code == 200
    assert response.json()["model"] == "fake/backup-two"
    tried = [r.body["model"] for r in fake_upstream.completions()]
    assert tried == ["fake/primary"] * 3 + ["fake/backup-one"] * 3 + ["fake/backup-two"]


async def test_it_retries_a_stream_only_before_it_starts(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(
        Reply(status=502, body=error_body(502, "x")), Reply(chunks=["a", "b", "c"], stream_error_after=1)
    )
    response = await send(client, stream=True)
    body = b"".join([part async for part in response.streaming_content])
    assert response.status_code == 200
    assert b"event: delta" in body and b"event: error" in body
    assert len(fake_upstream.completions()) == 2
