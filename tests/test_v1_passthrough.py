"""/v1/chat/completions forwards what the client sent, field for field, and still guards the key."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from django.test import AsyncClient

from gateway import guards
from tests.fake_upstream import FakeUpstream

V1 = "/v1/chat/completions"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
# The second request of a tool-call round trip, as an OpenAI client sends it.
ROUND_TRIP: dict[str, Any] = {
    "model": "openai/gpt-4o-mini",
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
            "refusal": None,
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
    ],
    "tools": TOOLS,
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "max_completion_tokens": 300,
    "stop": None,
    "user": None,
}


def test_it_forwards_a_tool_call_round_trip_as_sent(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    response = http.post(V1, json=ROUND_TRIP)
    assert response.status_code == 200
    assert fake_upstream.completions()[0].body == ROUND_TRIP  # no max_tokens, no temperature, nulls kept


def test_it_adds_only_the_model_and_a_missing_cap(
    http: httpx.Client, fake_upstream: FakeUpstream, settings: Any
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": False, "seed": 7}
    assert http.post(V1, json=body).status_code == 200
    # and, with no cap asked, the one its budgets hold (LLM_MAX_TOKENS, 1000 here)
    assert fake_upstream.completions()[0].body == {**body, "model": "openai/gpt-4o-mini", "max_tokens": 1000}
    capped = {**body, "max_completion_tokens": 50}
    assert http.post(V1, json=capped).status_code == 200
    assert fake_upstream.completions()[1].body == {**capped, "model": "openai/gpt-4o-mini"}


def test_it_forwards_a_stream_request_as_sent(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    """As sent, asking for the stream's usage (it settles the token budgets) when the client did not;
    the usage chunk then stays here, as OpenAI sends it only to a client that asked."""
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    body["max_tokens"] = 20
    for asked in (False, True):
        sent = {**body, "stream_options": {"include_usage": True}} if asked else body
        with http.stream("POST", V1, json=sent) as response:
            assert response.status_code == 200
            text = response.read().decode()
        assert fake_upstream.completions()[-1].body == {**body, "stream_options": {"include_usage": True}}
        # each chunk goes out as the upstream wrote it (the fake writes json.dumps's spacing)
        data = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        assert data[-1] == "[DONE]" and len(data) > 2
        assert all(line == json.dumps(json.loads(line)) and '", "' in line for line in data[:-1])
        usage = [json.loads(line) for line in data[:-1] if "usage" in json.loads(line)]
        assert len(usage) == (1 if asked else 0) and all(u["choices"] == [] for u in usage)


SPENDING = [
    ("plugins", {"plugins": [{"id": "web", "max_results": 25}]}),
    ("web_search_options", {"web_search_options": {"search_context_size": "high"}}),
    ("provider.max_price", {"provider": {"max_price": {"prompt": 100}}}),
]


@pytest.mark.parametrize(("name", "extra"), SPENDING)
async def test_it_refuses_each_spending_extra_unless_allowed(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any, name: str, extra: dict[str, Any]
) -> None:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], **extra}
    body["max_tokens"] = 20
    refused = await client.post(V1, body, content_type="application/json")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "extra_not_allowed",
        name,
        "invalid_request_error",
    )
    assert "ALLOWED_PASSTHROUGH_EXTRAS" in error["message"]
    assert fake_upstream.requests == []
    settings.ALLOWED_PASSTHROUGH_EXTRAS = [name]
    allowed = await client.post(V1, body, content_type="application/json")
    assert allowed.status_code == 200
    assert fake_upstream.completions()[0].body == body


async def test_it_allows_an_extra_only_when_it_is_the_one_allowed(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.ALLOWED_PASSTHROUGH_EXTRAS = ["plugins"]
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "provider": {"order": ["a"], "max_price": {"x": 1}},
    }
    response = await client.post(V1, body, content_type="application/json")
    assert response.json()["error"]["param"] == "provider.max_price"
    plain = {"messages": [{"role": "user", "content": "x"}], "provider": {"order": ["a"]}, "plugins": []}
    assert (await client.post(V1, plain, content_type="application/json")).status_code == 200


async def test_it_treats_the_online_suffix_as_web_search(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.ALLOWED_MODELS = ["openai/*"]
    body = {"model": "openai/gpt-4o-mini:online", "messages": [{"role": "user", "content": "x"}]}
    refused = await client.post(V1, body, content_type="application/json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "model_not_allowed"
    chat = await client.post(
        "/chat/message",
        {"message": "x", "model": "openai/gpt-4o-mini:online"},
        content_type="application/json",
    )
    assert chat.status_code == 400 and chat.json()["code"] == "model_not_allowed"
    assert fake_upstream.requests == []
    settings.ALLOWED_PASSTHROUGH_EXTRAS = ["plugins"]
    assert (await client.post(V1, body, content_type="application/json")).status_code == 200


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
async def test_it_caps_the_output_under_either_name(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any, name: str
) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], name: settings.LLM_MAX_TOKENS_LIMIT + 1}
    response = await client.post(V1, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "code": "max_tokens_too_large",
        "param": name,
    }
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "messages", "missing_required_parameter"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value"),
        (
            {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "temperature",
            "invalid_type",
        ),
        # what the gateway acts on must be what goes upstream: no "false" read as false here, as true there
        ({"messages": [{"role": "user", "content": "x"}], "stream": "false"}, "stream", "invalid_type"),
        (
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": "100000"},
            "max_tokens",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": "9"},
            "max_completion_tokens",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "temperature": "0.5"},
            "temperature",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "stream": True, "stream_options": "yes"},
            "stream_options",
            "invalid_type",
        ),
    ],
)
async def test_it_answers_a_bad_parameter_as_openai_does(
    client: AsyncClient, body: dict[str, Any], param: str, code: str
) -> None:
    response = await client.post(V1, body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


async def test_it_keeps_422_outside_v1(client: AsyncClient) -> None:
    response = await client.post("/chat/message", {}, content_type="application/json")
    assert response.status_code == 422 and response.json()["code"] == "validation_error"


def test_it_knows_every_extra_the_setting_may_allow(settings: Any) -> None:
    assert tuple(guards.SPENDING_EXTRAS) == settings.SPENDING_EXTRAS
