"""/v1/*: the OpenAI-compatible face. A completion is forwarded upstream and nothing is stored; errors,
validation errors included, come in OpenAI's error shape and say which field is wrong; max_tokens is
capped. (The real `openai` package as the client: test_openai_compat.py; which key goes upstream:
test_v1_bring_your_own_key.py; OpenRouter's extra fields and the model allow-list: test_guards.py.)

In-process through the NinjaAPI, and one live smoke test over real HTTP."""

from __future__ import annotations

import httpx
from django.test import AsyncClient

from tests.answers import call, ok
from tests.conftest import SECRET
from tests.fake_upstream import FakeUpstream, Reply

V1 = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def test_it_answers_a_completion_over_http(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    """The live smoke test of /v1, with a plain HTTP client."""
    fake_upstream.queue(Reply(model="fake/answered", content="Hi from upstream"))
    response = http.post(V1, json={"model": "openai/gpt-4o-mini", "messages": MESSAGES})
    assert response.status_code == 200
    assert SECRET not in response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "fake/answered"
    assert body["choices"][0]["message"]["content"] == "Hi from upstream"
    assert body["usage"]["total_tokens"] == 19
    assert fake_upstream.completions()[0].body["messages"] == MESSAGES


async def test_it_stores_nothing(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    await ok(client, "POST", V1, json_body={"messages": MESSAGES})
    assert len(fake_upstream.completions()) == 1
    assert (await ok(client, "GET", "/chat/conversations"))["total_conversations"] == 0
    assert (await ok(client, "GET", "/memory-chat/conversations"))["total_conversations"] == 0


async def test_it_answers_errors_in_openai_shape(client: AsyncClient) -> None:
    response = await call(client, "POST", V1, json_body={"messages": []})
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "code", "param"}
    assert response.json()["error"]["type"] == "invalid_request_error"
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"


async def test_it_explains_v1_validation_errors(client: AsyncClient) -> None:
    error = (await call(client, "POST", V1, json_body={"messages": []})).json()["error"]
    assert "messages" in error["message"]


async def test_it_caps_max_tokens(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6}
    response = await call(client, "POST", V1, json_body=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "max_tokens_too_large"
    assert fake_upstream.requests == []
