"""The Conversations API and responses kept in conversations are bound like /chat: the rate limit on
every write, each client's storage quota (CLIENT_STORAGE_BYTES, its own oldest conversations go), and
the token budgets."""

from __future__ import annotations

from typing import Any

from django.test import AsyncClient

ALICE = {"X-Forwarded-For": "203.0.113.1"}
BOB = {"X-Forwarded-For": "203.0.113.2"}


async def post(client: AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return await client.post(path, body, content_type="application/json", headers=headers)


async def test_it_rate_limits_every_conversation_write(client: AsyncClient, settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 1
    settings.RATE_LIMIT = (3, 3600)
    conversation = (await post(client, "/v1/conversations", {}, ALICE)).json()["id"]
    item = {"items": [{"role": "user", "content": "hi"}]}
    assert (await post(client, f"/v1/conversations/{conversation}/items", item, ALICE)).status_code == 200
    meta = {"metadata": {"a": "b"}}
    assert (await post(client, f"/v1/conversations/{conversation}", meta, ALICE)).status_code == 200
    for path, body in (
        ("/v1/conversations", {}),
        (f"/v1/conversations/{conversation}/items", item),
        (f"/v1/conversations/{conversation}", meta),
    ):
        refused = await post(client, path, body, ALICE)
        assert refused.status_code == 429, path
        assert refused.json()["error"]["type"] == "rate_limit_error" and refused["Retry-After"]
    assert (await post(client, "/v1/conversations", {}, BOB)).status_code == 200
    # reading is not counted
    assert (await client.get(f"/v1/conversations/{conversation}/items", headers=ALICE)).status_code == 200


async def test_it_keeps_a_clients_conversations_under_its_quota(client: AsyncClient, settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 1
    settings.CLIENT_STORAGE_BYTES = 256 * 1024
    theirs = (
        await post(client, "/v1/conversations", {"items": [{"role": "user", "content": "x"}]}, BOB)
    ).json()
    made = []
    for n in range(12):
        if n % 2:  # half through the Responses API, half as items
            conversation = (await post(client, "/v1/conversations", {}, ALICE)).json()["id"]
            answered = await post(
                client, "/v1/responses", {"input": "y" * 20_000, "conversation": conversation}, ALICE
            )
            assert answered.status_code == 200
        else:
            items = {"items": [{"role": "user", "content": "z" * 20_000}]}
            created = await post(client, "/v1/conversations", items, ALICE)
            assert created.status_code == 200
            conversation = created.json()["id"]
        made.append(conversation)
    alive = [(await client.get(f"/v1/conversations/{c}", headers=ALICE)).status_code == 200 for c in made]
    assert alive[-1] and not alive[0]  # its own oldest went, its newest stayed
    assert alive == sorted(alive)  # ...in order
    assert (await client.get(f"/v1/conversations/{theirs['id']}", headers=BOB)).status_code == 200


async def test_a_clients_metadata_counts_against_its_quota(client: AsyncClient, settings: Any) -> None:
    """Metadata was kept with no quota: one client held 7x its quota of it, and every other client's
    write then evicted its own conversations to leave that room to it (review)."""
    from stores import Kind, get_store

    settings.TRUSTED_PROXY_HOPS = 1
    settings.RATE_LIMIT = (0, 60)
    settings.STORE_MAX_BYTES = 1024 * 1024
    settings.CLIENT_STORAGE_BYTES = 128 * 1024
    heavy = {f"k{n:02}": "\U0001f600" * 512 for n in range(16)}  # within 16 keys of 512 characters
    bobs = await post(
        client, "/v1/conversations", {"items": [{"role": "user", "content": "b" * 30_000}]}, BOB
    )
    made = [
        (await post(client, "/v1/conversations", {"metadata": {}}, ALICE)).json()["id"] for _ in range(40)
    ]
    for conversation in made:  # set by an update as well as at creation
        assert (
            await post(client, f"/v1/conversations/{conversation}", {"metadata": heavy}, ALICE)
        ).status_code == 200
    for _ in range(40):
        assert (await post(client, "/v1/conversations", {"metadata": heavy}, ALICE)).status_code == 200
    metadata = get_store()._records[Kind.CHAT].bytes  # type: ignore[attr-defined]
    assert metadata <= settings.CLIENT_STORAGE_BYTES
    assert (
        await post(client, "/v1/conversations", {"items": [{"role": "user", "content": "hi"}]}, BOB)
    ).status_code == 200
    assert (await client.get(f"/v1/conversations/{bobs.json()['id']}", headers=BOB)).status_code == 200
