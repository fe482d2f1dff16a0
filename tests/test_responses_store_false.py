"""`store: false` leaves nothing behind: no stored response, no conversation, not a byte of the store,
streamed or not; and a response is stored only when the upstream answered."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient

from stores import Kind, get_store
from stores.local import LocalStore
from tests.fake_upstream import FakeUpstream, Reply


async def footprint() -> dict[str, Any]:
    store = get_store()
    assert isinstance(store, LocalStore)
    contents = store.contents()
    return {
        "records": {kind: list(slots) for kind, slots in contents.records.items()},
        "conversations": {kind: list(slots) for kind, slots in contents.index.items()},
        "bytes": await store.stored_bytes(),
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_it_leaves_nothing_behind_with_store_false(
    client: AsyncClient, fake_upstream: FakeUpstream, stream: bool
) -> None:
    before = await footprint()
    if stream:
        fake_upstream.queue(Reply(chunks=["a", "b"]))
    answer = await client.post(
        "/v1/responses",
        {"input": "forget me", "store": False, "stream": stream},
        content_type="application/json",
    )
    assert answer.status_code == 200
    body = b"".join([part async for part in answer.streaming_content]) if stream else answer.content
    assert b"forget me" in body or b"ab" in body
    assert await footprint() == before
    assert len(fake_upstream.completions()) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_it_stores_nothing_when_the_upstream_fails(
    client: AsyncClient, fake_upstream: FakeUpstream, stream: bool
) -> None:
    conversation = await client.post("/v1/conversations", {}, content_type="application/json")
    conversation_id = conversation.json()["id"]
    before = await footprint()
    fake_upstream.queue(Reply(chunks=["a", "b"], stream_error_after=1) if stream else Reply(status=500))
    answer = await client.post(
        "/v1/responses",
        {"input": "fails", "stream": stream, "conversation": conversation_id},
        content_type="application/json",
    )
    if stream:
        body = b"".join([part async for part in answer.streaming_content])
        assert b"response.failed" in body
    else:
        assert answer.status_code == 502
    assert await footprint() == before
    assert (await get_store().get(Kind.CHAT, conversation_id, owner="anonymous")) is not None
