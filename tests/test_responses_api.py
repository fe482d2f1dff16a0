"""/v1/responses with the official `openai` SDK against the live server and the fake upstream. Every
answer is also validated strictly against the SDK's own types (`model_validate`), beyond the SDK's
lenient parsing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseItemList

from tests.conftest import SECRET
from tests.fake_upstream import FakeUpstream, Reply

MODEL = "openai/gpt-4o-mini"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

GET_WEATHER: Any = {"type": "function", "name": "get_weather"}


@pytest.fixture
def sdk(live_server_url: str) -> Iterator[openai.OpenAI]:
    # A client token of its own: these responses are nobody else's.
    token = uuid.uuid4().hex + uuid.uuid4().hex
    client = openai.OpenAI(
        base_url=f"{live_server_url}/v1",
        api_key="sk-client-token",
        max_retries=0,
        default_headers={"X-Client-Token": token},
    )
    yield client
    client.close()


def first_text(item: Any) -> str:
    text: str = item.content[0].text
    return text


def strict(response: Response) -> Response:
    """The raw JSON, validated against the SDK's Response type (required fields, literals)."""
    return Response.model_validate(response.to_dict())


def test_it_sends_the_first_two_turns_with_the_third(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    first = sdk.responses.create(model=MODEL, input="one", instructions="Be brief.")
    second = sdk.responses.create(model=MODEL, input="two", previous_response_id=first.id)
    third = sdk.responses.create(model=MODEL, input="three", previous_response_id=second.id)
    assert [strict(r).output_text for r in (first, second, third)] == [
        "Fake reply to: one",
        "Fake reply to: two",
        "Fake reply to: three",
    ]
    assert third.previous_response_id == second.id and third.status == "completed"
    assert third.usage is not None and third.usage.total_tokens == 19
    sent = [r.body for r in fake_upstream.completions()]
    assert sent[2]["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Fake reply to: one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "Fake reply to: two"},
        {"role": "user", "content": "three"},
    ]
    # instructions belong to their own response only, as in OpenAI's API
    assert sent[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    # no cap asked: the one its budgets hold (LLM_MAX_TOKENS); no temperature
    assert sent[2]["max_tokens"] == 1000 and "temperature" not in sent[2]


def test_it_streams_text_deltas_as_the_upstream_sends_them(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    with sdk.responses.stream(model=MODEL, input="warm-up") as warm_up:  # the SDK builds its types once
        warm_up.until_done()
    fake_upstream.queue(Reply(chunks=["Once ", "upon ", "a time."], chunk_delay=0.5))
    arrivals: list[tuple[str, float]] = []
    events = []
    with sdk.responses.stream(model=MODEL, input="A story, please.") as stream:
        for event in stream:
            events.append(event)
            if event.type == "response.output_text.delta":
                arrivals.append((event.delta, time.monotonic()))
        ended = time.monotonic()
        final = stream.get_final_response()
    assert [delta for delta, _ in arrivals] == ["Once ", "upon ", "a time."]
    # each delta arrives when the upstream sends it, not all at the end
    assert arrivals[1][1] - arrivals[0][1] > 0.35 and arrivals[2][1] - arrivals[1][1] > 0.35
    assert ended - arrivals[0][1] > 0.8
    assert strict(final).output_text == "Once upon a time." and final.status == "completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert fake_upstream.completions()[-1].body["stream_options"] == {"include_usage": True}
    assert sdk.responses.retrieve(final.id).output_text == "Once upon a time."


def test_it_streams_with_stream_true_too(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(chunks=["a", "b"]))
    kinds = [event.type for event in sdk.responses.create(model=MODEL, input="x", stream=True)]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


def test_it_makes_a_function_calling_round_trip(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    call = {"id": "call_42", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    fake_upstream.queue(Reply(tool_calls=[call]), Reply(content="It is sunny in Paris."))
    asked = sdk.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER_TOOL])  # type: ignore[list-item]
    (function_call,) = strict(asked).output
    assert function_call.type == "function_call"
    assert (function_call.call_id, function_call.name, function_call.arguments) == (
        "call_42",
        "get_weather",
        '{"city": "Paris"}',
    )
    answered = sdk.responses.create(
        model=MODEL,
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": "call_42", "output": "Sunny, 21 C"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice=GET_WEATHER,
        parallel_tool_calls=False,
    )
    assert strict(answered).output_text == "It is sunny in Paris."
    first, second = (r.body for r in fake_upstream.completions())
    assert first["tools"] == [
        {
            "type": "function",
            "function": {k: WEATHER_TOOL[k] for k in ("name", "description", "parameters")},
        }
    ]
    assert "tool_choice" not in first and asked.tool_choice == "auto"  # the upstream's own default
    assert second["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert second["parallel_tool_calls"] is False
    assert second["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_42",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_42", "content": "Sunny, 21 C"},
    ]


def test_it_streams_a_function_call(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    call = {"id": "call_7", "name": "get_weather", "arguments": '{"city": "Oslo"}'}
    fake_upstream.queue(Reply(chunks=["Let me check. "], tool_calls=[call]))
    with sdk.responses.stream(model=MODEL, input="Oslo?", tools=[WEATHER_TOOL]) as stream:  # type: ignore[list-item]
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds.count("response.function_call_arguments.delta") == 2
    assert "response.function_call_arguments.done" in kinds
    text, function_call = strict(final).output
    assert text.type == "message" and final.output_text == "Let me check. "
    assert function_call.type == "function_call" and function_call.arguments == '{"city": "Oslo"}'
    assert function_call.call_id == "call_7" and function_call.name == "get_weather"


def test_it_retrieves_and_deletes_a_response(sdk: openai.OpenAI) -> None:
    created = sdk.responses.create(
        model=MODEL, input=[{"role": "user", "content": "keep me"}], metadata={"a": "b"}
    )
    again = sdk.responses.retrieve(created.id)
    assert strict(again) == strict(created)
    assert again.metadata == {"a": "b"}
    listed = sdk.responses.input_items.list(created.id)
    assert [item.type for item in listed.data] == ["message"]
    assert first_text(listed.data[0]) == "keep me"
    sdk.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.responses.retrieve(created.id)
    assert raised.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model=MODEL, input="more", previous_response_id=created.id)


def test_it_keeps_nothing_with_store_false(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream, http: httpx.Client
) -> None:
    response = sdk.responses.create(model=MODEL, input="forget me", store=False)
    assert response.output_text == "Fake reply to: forget me"
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model=MODEL, input="and then?", previous_response_id=response.id)
    assert len(fake_upstream.completions()) == 1  # the refused continuation never reached the upstream


def test_it_raises_context_length_exceeded_from_responses(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    error = {
        "message": f"This model's maximum context length is 8192 tokens ({SECRET}).",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    fake_upstream.queue(Reply(status=400, body={"error": error}))
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model=MODEL, input="a long story")
    assert raised.value.code == "context_length_exceeded"
    assert SECRET not in raised.value.message and "[redacted]" in raised.value.message


def test_it_lists_input_items_by_page(sdk: openai.OpenAI) -> None:
    given = [{"role": "user", "content": f"part {n}"} for n in range(5)]
    created = sdk.responses.create(model=MODEL, input=given)  # type: ignore[arg-type]
    first = sdk.responses.input_items.list(created.id, limit=2, order="asc")
    ResponseItemList.model_validate(first.to_dict())
    assert [first_text(i) for i in first.data] == ["part 0", "part 1"]
    everything = [first_text(i) for i in sdk.responses.input_items.list(created.id, limit=2)]
    assert everything == [f"part {n}" for n in reversed(range(5))]


def test_it_maps_structured_output_and_options(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(content='{"answer": 4}'))
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    text: Any = {"format": {"type": "json_schema", "name": "sum", "schema": schema, "strict": True}}
    response = sdk.responses.create(
        model=MODEL,
        input="2 + 2?",
        text=text,
        max_output_tokens=50,
        temperature=0.2,
        top_p=0.5,
        user="someone",
    )
    assert json.loads(response.output_text) == {"answer": 4}
    sent = fake_upstream.completions()[0].body
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "sum", "schema": schema, "strict": True},
    }
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["user"]) == (50, 0.2, 0.5, "someone")
    assert strict(response).text is not None and response.max_output_tokens == 50


def test_it_marks_a_reply_cut_by_max_output_tokens_incomplete(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(content="Once upon", finish_reason="length"))
    response = strict(sdk.responses.create(model=MODEL, input="story", max_output_tokens=2))
    assert response.status == "incomplete"
    assert (
        response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    )


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"background": True}, "background"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"max_output_tokens": 10**6}, "max_output_tokens"),
        ({"tool_choice": {"type": "web_search"}}, "tool_choice"),
    ],
)
def test_it_refuses_what_it_does_not_do_with_a_clear_400(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream, extra: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL, "input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.post("/responses", body=body, cast_to=Response)
    assert raised.value.param == param
    assert fake_upstream.completions() == []


def test_it_answers_an_unknown_response_with_404(sdk: openai.OpenAI) -> None:
    for call in (
        lambda: sdk.responses.retrieve("resp_unknown"),
        lambda: sdk.responses.delete("resp_unknown"),
        lambda: sdk.responses.input_items.list("resp_unknown"),
        lambda: sdk.responses.create(model=MODEL, input="x", previous_response_id="resp_unknown"),
    ):
        with pytest.raises(openai.NotFoundError):
            call()


def test_it_keeps_each_callers_responses_apart(sdk: openai.OpenAI, live_server_url: str) -> None:
    mine = sdk.responses.create(model=MODEL, input="mine")
    with openai.OpenAI(
        base_url=f"{live_server_url}/v1",
        api_key="x",
        max_retries=0,
        default_headers={"X-Client-Token": "o" * 40},
    ) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model=MODEL, input="theirs", previous_response_id=mine.id)
