"""The provider's own 4xx reaches /v1 clients as the provider said it (its key masked), so SDKs raise
the class they would against the provider; a context window overflow has its own code everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from django.test import AsyncClient

from tests.conftest import SECRET
from tests.fake_upstream import FakeUpstream, Reply, error_body

OPENAI_CONTEXT = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted "
        "in 9001 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
OPENROUTER_CONTEXT = error_body(
    400, "This endpoint's maximum context length is 128000 tokens. However, you requested about 200000."
)
LLAMA_CPP_CONTEXT = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 9000,
        "n_ctx": 8192,
    }
}
MESSAGES = [{"role": "user", "content": "a very long story"}]


@pytest.fixture
def sdk(live_server_url: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key="sk-client-token", max_retries=0)
    yield client
    client.close()


@pytest.mark.parametrize(
    "body", [OPENAI_CONTEXT, OPENROUTER_CONTEXT, LLAMA_CPP_CONTEXT], ids=["openai", "openrouter", "llama.cpp"]
)
def test_it_raises_context_length_exceeded_in_the_sdk(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream, body: dict[str, Any]
) -> None:
    fake_upstream.queue(Reply(status=400, body=body))
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert raised.value.code == "context_length_exceeded"
    assert body["error"]["message"] in raised.value.message


def test_it_passes_the_providers_type_code_and_param(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    error = {
        "message": f"Invalid value for 'temperature' (key {SECRET})",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "invalid_value",
    }
    fake_upstream.queue(Reply(status=400, body={"error": error}))
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert raised.value.body == {**error, "message": "Invalid value for 'temperature' (key [redacted])"}


def test_it_answers_a_providers_404_as_a_404(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    error = {
        "message": "The model `x` does not exist",
        "type": "invalid_request_error",
        "code": "model_not_found",
    }
    fake_upstream.queue(Reply(status=404, body={"error": error}))
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert raised.value.code == "model_not_found"


def test_it_keeps_5xx_and_transport_failures_ours(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(status=500, body=error_body(500, "internal provider detail")))
    with pytest.raises(openai.InternalServerError) as raised:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert raised.value.code == "upstream_error" and "internal provider detail" not in str(raised.value)
    fake_upstream.queue(Reply(drop=True))
    with pytest.raises(openai.InternalServerError) as dropped:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert dropped.value.code == "upstream_unreachable"


@pytest.mark.parametrize(
    "body", [OPENAI_CONTEXT, OPENROUTER_CONTEXT, LLAMA_CPP_CONTEXT], ids=["openai", "openrouter", "llama.cpp"]
)
async def test_it_says_what_to_do_when_a_chat_outgrows_the_context(
    client: AsyncClient, fake_upstream: FakeUpstream, body: dict[str, Any]
) -> None:
    fake_upstream.queue(Reply(status=400, body=body))
    response = await client.post(
        "/chat/message", {"message": "more", "conversation_id": "long-one"}, content_type="application/json"
    )
    assert response.status_code == 400
    answer = response.json()
    assert answer["code"] == "context_length_exceeded"
    assert "start a new conversation" in answer["message"] and "CHAT_CONTEXT_TOKENS" in answer["message"]
    assert "128000" not in answer["message"] and "8192" not in answer["message"]  # ours, not the provider's


def test_it_passes_the_providers_error_when_a_stream_is_refused(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(status=400, body=OPENAI_CONTEXT))
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert raised.value.code == "context_length_exceeded" and raised.value.param == "messages"
    fake_upstream.queue(Reply(status=400, body=OPENAI_CONTEXT))
    with pytest.raises(openai.BadRequestError) as from_responses:
        sdk.responses.create(model="openai/gpt-4o-mini", input="long", stream=True)
    assert from_responses.value.code == "context_length_exceeded"


@pytest.mark.parametrize(
    ("status", "raised"),
    [
        (404, openai.NotFoundError),
        (409, openai.ConflictError),
        (413, openai.APIStatusError),
        (422, openai.UnprocessableEntityError),
        (403, openai.PermissionDeniedError),
        (429, openai.RateLimitError),
    ],
)
def test_it_keeps_every_providers_4xx_as_the_sdk_would_see_it(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream, status: int, raised: type[openai.APIStatusError]
) -> None:
    error = {
        "message": f"Refused ({SECRET})",
        "type": "invalid_request_error",
        "param": "messages[0]",
        "code": f"refused_{status}",
    }
    for call in (
        lambda: sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES),  # type: ignore[arg-type]
        lambda: sdk.responses.create(model="openai/gpt-4o-mini", input="hello"),
        lambda: sdk.responses.create(model="openai/gpt-4o-mini", input="hello", stream=True),
    ):
        fake_upstream.queue(Reply(status=status, body={"error": error}))
        with pytest.raises(raised) as caught:
            call()
        assert caught.value.status_code == status
        assert caught.value.body == {**error, "message": "Refused ([redacted])"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": "model 'llama9' not found"}, {"message": "model 'llama9' not found"}),  # Ollama
        (  # vLLM before it wrapped its errors
            {"object": "error", "message": "bad", "type": "BadRequestError", "param": None, "code": 400},
            {"message": "bad", "type": "BadRequestError"},
        ),
        (  # OpenRouter, with the error of the provider behind it
            {
                "error": {
                    "message": "Provider returned error",
                    "code": 400,
                    "metadata": {"raw": orjson.dumps(OPENAI_CONTEXT).decode(), "provider_name": "OpenAI"},
                }
            },
            OPENAI_CONTEXT["error"],
        ),
    ],
    ids=["ollama", "vllm", "openrouter-raw"],
)
def test_it_reads_the_error_shapes_of_other_servers(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    fake_upstream.queue(Reply(status=400, body=body))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert isinstance(caught.value.body, dict)
    assert {k: v for k, v in caught.value.body.items() if k in expected} == expected


def test_it_keeps_a_4xx_without_an_error_object_as_a_4xx(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(
        Reply(status=413, body=b"<html>too large</html>", headers={"Content-Type": "text/html"})
    )
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 413 and caught.value.code == "upstream_refused"
    assert "<html>" not in caught.value.message


async def test_it_answers_a_providers_404_outside_v1_in_our_shape(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(status=404, body={"error": {"message": "No endpoints found", "code": 404}}))
    response = await client.post("/chat/message", {"message": "hi"}, content_type="application/json")
    assert response.status_code == 404
    assert response.json()["code"] == "upstream_refused"
    assert "No endpoints found" not in response.content.decode()  # outside /v1: ours
