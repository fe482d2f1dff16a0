"""`store: false` leaves nothing behind: no stored response, no conversation, not a byte of the store,
streamed or not; and a response is stored only when the upstream answered."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient

from stores import Kind, get_store
from stores.local import LocalStore
from tests.fake_upstream import FakeUpstream, Reply


async def body_of(answer: Any) -> bytes:
    """A streamed answer's body, or a plain one's."""
    if getattr(answer, "streaming", False):
        return b"".join([part async for part in answer.streaming_content])
    return bytes(answer.content)


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
    body = await body_of(answer)
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
        assert b"response.failed" in await body_of(answer)
    else:
        assert answer.status_code == 502
    assert await footprint() == before
    assert (await get_store().get(Kind.CHAT, conversation_id, owner="anonymous")) is not None


async def test_a_clients_stored_responses_keep_within_its_storage_quota(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    """Stored responses count against CLIENT_STORAGE_BYTES like conversations: one client storing more
    loses its own oldest, and the store stays within its bound."""
    settings.CLIENT_STORAGE_BYTES = 64 * 1024
    ids = []
    for n in range(4):
        answer = await client.post(
            "/v1/responses", {"input": f"{n} " + "x" * 20_000}, content_type="application/json"
        )
        assert answer.status_code == 200
        ids.append(answer.json()["id"])
    found = [(await client.get(f"/v1/responses/{rid}")).status_code for rid in ids]
    assert found[-1] == 200 and 404 in found and found == sorted(found, reverse=True), found
    assert (await client.get(f"/v1/responses/{ids[0]}")).json()["error"]["code"] == "response_not_found"
