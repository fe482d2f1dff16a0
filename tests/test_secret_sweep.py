"""Proof that nothing leaks: every operation of the OpenAPI schema, with good and bad input, with
and without keys; the server key and the access key appear in no body, header or log record."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream, Reply, error_body

UPSTREAM_SECRET = "sk-or-v1-sweep-upstream-secret-0123456789"
ACCESS_SECRET = "ak-sweep-access-secret-0123456789"
GOOD_BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"input": "hi"},
    "/v1/conversations": {"items": [{"role": "user", "content": "hi"}]},
    "/v1/conversations/sweep-id/items": {"items": [{"role": "user", "content": "hi"}]},
}
BAD_BODIES: list[Any] = [
    {},
    {"message": "", "api_key": UPSTREAM_SECRET},
    {"message": "x", "temperature": 9, "api_key": ACCESS_SECRET},
    {"messages": "nope", "api_key": UPSTREAM_SECRET},
    {"message": "stream me", "stream": True},
    {"messages": [{"role": "user", "content": "x"}], "stream": True},
]


def operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for path, methods in schema["paths"].items():
        for method in methods:
            found.append((method, re.sub(r"\{[^}]+\}", "sweep-id", path)))
    return found


@pytest.fixture(autouse=True)
def _secrets(settings: Any) -> None:
    settings.LLM_API_KEY = UPSTREAM_SECRET
    settings.BACKEND_API_KEYS = [ACCESS_SECRET]
    settings.ADMIN_API_KEYS = [ACCESS_SECRET]  # an admin too: the sweep reaches the diagnostics


async def body_text(response: Any) -> str:
    if response.streaming:
        return b"".join([part async for part in response.streaming_content]).decode(errors="replace")
    return response.content.decode(errors="replace")


async def assert_clean(response: Any, where: str) -> None:
    text = await body_text(response)
    headers = " ".join(f"{k}: {v}" for k, v in response.items())
    for secret in (UPSTREAM_SECRET, ACCESS_SECRET):
        assert secret not in text, where
        assert secret not in headers, where
    assert response.status_code < 500, where


async def call(client: AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    if method in ("post", "put", "patch"):
        return await getattr(client, method)(path, body, content_type="application/json", headers=headers)
    return await getattr(client, method)(path, headers=headers)


async def test_it_leaks_no_secret_anywhere(
    client: AsyncClient, fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    schema = (await client.get("/openapi.json")).json()
    ops = operations(schema)
    assert len(ops) >= 30
    calls = 0
    for method, path in ops:
        for headers in ({}, {"Authorization": f"Bearer {ACCESS_SECRET}"}, {"X-API-Key": "wrong"}):
            bodies = [GOOD_BODIES.get(path, {"message": "hello", "conversation_id": "sweep-id"}), *BAD_BODIES]
            for body in bodies if method == "post" else [None]:
                fake_upstream.reset()
                if not (isinstance(body, dict) and body.get("stream")):  # streams get a real reply to sweep
                    fake_upstream.queue(Reply(status=401, body=error_body(401, f"bad key {UPSTREAM_SECRET}")))
                response = await call(client, method, path, body, headers)
                await assert_clean(response, f"{method} {path} {headers} {body}")
                calls += 1
    assert calls > 100
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert UPSTREAM_SECRET not in logged and ACCESS_SECRET not in logged
    buffer = (
        await client.get("/api/hf/logs?limit=1000", headers={"X-API-Key": ACCESS_SECRET})
    ).content.decode()
    assert UPSTREAM_SECRET not in buffer and ACCESS_SECRET not in buffer


def test_it_redacts_secrets_written_to_any_logger(caplog: pytest.LogCaptureFixture, settings: Any) -> None:
    caplog.set_level(logging.INFO)
    log = logging.getLogger("tests.redaction")
    log.info("configured key %s", UPSTREAM_SECRET)
    log.info("headers {'Authorization': 'Bearer some-client-token-123456'} X-API-Key: abc123secret")
    log.info('body {"api_key": "my-own-upstream-key", "message": "hi"}')
    log.info("stray key sk-proj-abcdefghijklmnopqrstuvwxyz0123 in text")
    try:
        raise RuntimeError(f"failed with {UPSTREAM_SECRET}")
    except RuntimeError:
        log.exception("boom")
    text = caplog.text
    for secret in (
        UPSTREAM_SECRET,
        "some-client-token-123456",
        "abc123secret",
        "my-own-upstream-key",
        "sk-proj-abcdef",
    ):
        assert secret not in text
    assert text.count("[redacted]") >= 6
    assert '"message": "hi"' in text  # only the secret goes, not the rest of the line


READ_PATHS = [
    "/",
    "/health",
    "/chat/",
    "/chat/health",
    "/chat/models",
    "/chat/conversations",
    "/chat/conversations/{chat_id}",
    "/openrouter/",
    "/openrouter/health",
    "/openrouter/models",
    "/memory-chat/",
    "/memory-chat/health",
    "/memory-chat/conversations",
    "/memory-chat/conversations/{memory_id}",
    "/api/hf/status",
    "/api/hf/ready",
    "/api/hf/environment",
    "/api/hf/debug",
    "/api/hf/logs?limit=1000",
    "/api/simple/health",
    "/api/options/config",
    "/docs",
    "/openapi.json",
]


async def test_it_shows_the_key_in_no_answer(client: AsyncClient) -> None:
    headers = {"X-API-Key": ACCESS_SECRET}
    chat = await client.post(
        "/chat/message", {"message": "secret check"}, content_type="application/json", headers=headers
    )
    memory = await client.post(
        "/memory-chat/message", {"message": "secret check"}, content_type="application/json", headers=headers
    )
    ids = {"chat_id": chat.json()["conversation_id"], "memory_id": memory.json()["conversation_id"]}
    for template in READ_PATHS:
        path = template.format(**ids)
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, path
        assert response.content, path
        await assert_clean(response, path)
