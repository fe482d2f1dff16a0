"""Every conversation has an owner, and only its owner sees it: browser tokens, access keys, an admin
key and no identity, on both stores, through the whole ASGI stack (edge, middleware, API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from config.asgi import application
from stores import reset_store
from stores.redis_store import RedisStore
from tests.conftest import RedisServer

TOKEN_A = "a" * 20 + "-token-for-browser-A"
TOKEN_B = "b" * 20 + "_token_for_browser_B"
KEY_ONE = "ak-one-0123456789abcdef"
KEY_TWO = "ak-two-0123456789abcdef"
ADMIN = "adm-0123456789abcdefghij"

KINDS = [
    ("/chat/message", "/chat/conversations"),
    ("/memory-chat/message", "/memory-chat/conversations"),
]


@pytest.fixture(params=["local", "redis"])
async def store(request: pytest.FixtureRequest, settings: Any) -> AsyncIterator[str]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        settings.REDIS_URL = server.url
        reset_store()
        cleaner = RedisStore(server.url)
        await cleaner.flush()
        yield request.param
        await cleaner.flush()
        await cleaner.aclose()
        reset_store()
        return
    yield request.param


@pytest.fixture
async def gateway(store: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def as_token(token: str) -> dict[str, str]:
    return {"X-Client-Token": token}


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def send(gateway: httpx.AsyncClient, path: str, who: dict[str, str], conversation_id: str) -> Any:
    response = await gateway.post(
        path, json={"message": "hi", "conversation_id": conversation_id}, headers=who
    )
    assert response.status_code == 200, response.text
    return response.json()


async def listed(gateway: httpx.AsyncClient, path: str, who: dict[str, str]) -> list[tuple[str, str]]:
    response = await gateway.get(path, headers=who)
    assert response.status_code == 200, response.text
    return sorted((c["owner"], c["id"]) for c in response.json()["conversations"])


async def check_isolation(gateway: httpx.AsyncClient, callers: dict[str, dict[str, str]]) -> None:
    for send_path, list_path in KINDS:
        for name, who in callers.items():
            await send(gateway, send_path, who, "shared")
            await send(gateway, send_path, who, f"only-{name}")
        for name, who in callers.items():
            mine = await listed(gateway, list_path, who)
            assert [cid for _, cid in mine] == sorted(["shared", f"only-{name}"])
            assert len({owner for owner, _ in mine}) == 1
            shared = (await gateway.get(f"{list_path}/shared", headers=who)).json()["conversation"]
            assert shared["message_count"] == 2  # one turn: nobody else's turn was added to it
            continued = await send(gateway, send_path, who, "shared")
            assert continued["message_count"] == 4
            for other in callers:
                if other == name:
                    continue
                stranger = await gateway.get(f"{list_path}/only-{other}", headers=who)
                never = await gateway.get(f"{list_path}/never-used-id", headers=who)
                assert stranger.status_code == never.status_code == 404
                assert stranger.json()["code"] == never.json()["code"] == "conversation_not_found"
                assert (await gateway.delete(f"{list_path}/only-{other}", headers=who)).status_code == 404
        for name, who in callers.items():  # nothing of anyone's was lost on the way
            assert [cid for _, cid in await listed(gateway, list_path, who)] == sorted(
                ["shared", f"only-{name}"]
            )


async def test_it_keeps_browser_tokens_and_the_anonymous_space_apart(gateway: httpx.AsyncClient) -> None:
    await check_isolation(gateway, {"a": as_token(TOKEN_A), "b": as_token(TOKEN_B), "nobody": {}})


async def test_it_keeps_access_keys_apart_and_lets_an_admin_see_and_delete_any(
    gateway: httpx.AsyncClient, settings: Any
) -> None:
    settings.BACKEND_API_KEYS = [f"one:{KEY_ONE}", f"two:{KEY_TWO}"]
    settings.ADMIN_API_KEYS = [f"ops:{ADMIN}"]
    assert (await gateway.get("/chat/conversations")).status_code == 401
    await check_isolation(gateway, {"one": as_key(KEY_ONE), "two": as_key(KEY_TWO)})
    everything = await listed(gateway, "/chat/conversations", as_key(ADMIN))
    assert len(everything) == 4 and len({owner for owner, _ in everything}) == 2
    owner_one = next(owner for owner, cid in everything if cid == "only-one")
    assert KEY_ONE not in owner_one
    path = "/chat/conversations/only-one"
    assert (await gateway.get(path, headers=as_key(ADMIN))).status_code == 404  # the admin's own: none
    read = await gateway.get(path, params={"owner": owner_one}, headers=as_key(ADMIN))
    assert read.status_code == 200 and read.json()["conversation"]["owner"] == owner_one
    refused = await gateway.get(path, params={"owner": owner_one}, headers=as_key(KEY_TWO))
    assert refused.status_code == 403 and refused.json()["code"] == "admin_only"
    deleted = await gateway.delete(path, params={"owner": owner_one}, headers=as_key(ADMIN))
    assert deleted.status_code == 200
    assert (await gateway.get(path, headers=as_key(KEY_ONE))).status_code == 404


async def test_it_clears_only_the_callers_own(gateway: httpx.AsyncClient) -> None:
    for who in (as_token(TOKEN_A), as_token(TOKEN_B), {}):
        await send(gateway, "/memory-chat/message", who, "kept")
    cleared = await gateway.delete("/memory-chat/conversations", headers=as_token(TOKEN_A))
    assert cleared.status_code == 200 and "Cleared 1 " in cleared.json()["message"]
    assert await listed(gateway, "/memory-chat/conversations", as_token(TOKEN_A)) == []
    assert len(await listed(gateway, "/memory-chat/conversations", as_token(TOKEN_B))) == 1
    assert len(await listed(gateway, "/memory-chat/conversations", {})) == 1
    health = (await gateway.get("/memory-chat/health")).json()
    assert health["active_conversations"] == 2  # aggregate figures stay


async def test_it_can_turn_the_anonymous_space_off(gateway: httpx.AsyncClient, settings: Any) -> None:
    settings.ANONYMOUS_CONVERSATIONS = False
    for path in ("/chat/message", "/memory-chat/message", "/test-chat/message"):
        refused = await gateway.post(path, json={"message": "hi"})
        assert refused.status_code == 401 and refused.json()["code"] == "client_token_required", path
        assert (
            await gateway.post(path, json={"message": "hi"}, headers=as_token(TOKEN_A))
        ).status_code == 200
    assert (await gateway.get("/memory-chat/health")).json()["active_conversations"] == 1


@pytest.mark.parametrize("token", ["short", "x" * 257, "has spaces in it and is long enough ok"])
async def test_it_refuses_a_token_that_could_be_guessed_or_is_malformed(
    gateway: httpx.AsyncClient, token: str
) -> None:
    response = await gateway.post("/memory-chat/message", json={"message": "hi"}, headers=as_token(token))
    assert response.status_code == 400 and response.json()["code"] == "invalid_client_token"
    assert token not in response.text


@pytest.mark.parametrize("path", ["/api/hf/logs", "/api/hf/environment", "/api/hf/debug", "/metrics"])
async def test_it_keeps_diagnostics_for_admins_once_keys_exist(
    gateway: httpx.AsyncClient, settings: Any, path: str
) -> None:
    assert (await gateway.get(path)).status_code == 200  # no key configured: open, as documented
    settings.BACKEND_API_KEYS = [KEY_ONE]
    settings.ADMIN_API_KEYS = [ADMIN]
    assert (await gateway.get(path)).status_code == 401
    refused = await gateway.get(path, headers=as_key(KEY_ONE))
    assert refused.status_code == 403 and refused.json()["code"] == "admin_only"
    assert (await gateway.get(path, headers=as_key(ADMIN))).status_code == 200
    settings.BACKEND_API_KEYS = []  # admin keys alone: the service is open, diagnostics are not
    assert (await gateway.get(path, headers=as_token(TOKEN_A))).status_code == 403


async def test_it_hides_who_and_which_conversation_from_the_public_log(
    gateway: httpx.AsyncClient, settings: Any
) -> None:
    await send(gateway, "/memory-chat/message", as_token(TOKEN_A), "secret-topic-42")
    await gateway.get("/memory-chat/conversations/secret-topic-42", headers=as_token(TOKEN_A))
    public = (await gateway.get("/api/hf/logs", params={"limit": 50})).json()["logs"]
    assert public, "no records"
    assert "secret-topic-42" not in str(public) and TOKEN_A not in str(public)
    lines = [r for r in public if r["logger"] == "gateway.access"]
    assert lines and all("client" not in r and "owner" not in r for r in lines)
    assert any(r["path"] == "/memory-chat/conversations/<conversation_id>" for r in lines), lines
    settings.ADMIN_API_KEYS = [ADMIN]
    private = (await gateway.get("/api/hf/logs", params={"limit": 50}, headers=as_key(ADMIN))).json()["logs"]
    named = [r for r in private if r.get("conversation_id") == "secret-topic-42"]
    assert named and named[0]["owner"].startswith("t-") and "client" in named[0]
    assert TOKEN_A not in str(private)


async def test_it_keeps_responses_and_openai_conversations_to_their_owner(
    gateway: httpx.AsyncClient, settings: Any
) -> None:
    settings.BACKEND_API_KEYS = [f"one:{KEY_ONE}", f"two:{KEY_TWO}"]
    one, two = as_key(KEY_ONE), as_key(KEY_TWO)
    made = await gateway.post("/v1/responses", json={"input": "mine"}, headers=one)
    assert made.status_code == 200, made.text
    response_id = made.json()["id"]
    created = await gateway.post("/v1/conversations", json={"metadata": {"a": "b"}}, headers=one)
    conversation = created.json()
    added = await gateway.post(
        f"/v1/conversations/{conversation['id']}/items",
        json={"items": [{"role": "user", "content": "hello"}]},
        headers=one,
    )
    item_id = added.json()["data"][0]["id"]
    base = f"/v1/conversations/{conversation['id']}"
    attempts = [
        ("GET", f"/v1/responses/{response_id}", None),
        ("GET", f"/v1/responses/{response_id}/input_items", None),
        ("DELETE", f"/v1/responses/{response_id}", None),
        ("POST", "/v1/responses", {"input": "x", "previous_response_id": response_id}),
        ("POST", "/v1/responses", {"input": "x", "conversation": conversation["id"]}),
        ("GET", base, None),
        ("POST", base, {"metadata": {"c": "d"}}),
        ("GET", f"{base}/items", None),
        ("POST", f"{base}/items", {"items": [{"role": "user", "content": "intruder"}]}),
        ("GET", f"{base}/items/{item_id}", None),
        ("DELETE", f"{base}/items/{item_id}", None),
        ("DELETE", base, None),
    ]
    for method, path, body in attempts:
        refused = await gateway.request(method, path, json=body, headers=two)
        assert refused.status_code == 404, (method, path, refused.text)
        assert refused.json()["error"]["type"] == "not_found_error"
    # the owner still has everything, untouched
    assert (await gateway.get(f"/v1/responses/{response_id}", headers=one)).json()["output_text"]
    assert (await gateway.get(base, headers=one)).json()["metadata"] == {"a": "b"}
    listed = (await gateway.get(f"{base}/items", headers=one)).json()["data"]
    assert [item["id"] for item in listed] == [item_id]
    assert (await gateway.get("/chat/conversations", headers=two)).json()["total"] == 0
