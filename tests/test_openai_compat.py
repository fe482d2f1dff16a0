"""/v1 with the real `openai` package as the client, against the live server and the fake upstream: plain
and streamed completions, the SDK's own error classes, the model list, and v1 calls in the statistics."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import SECRET
from tests.fake_upstream import FakeUpstream, Reply, error_body


@pytest.fixture
def sdk(live_server_url: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key="sk-client-token", max_retries=0)
    yield client
    client.close()


def test_it_answers_a_plain_completion(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(model="fake/answered", content="Hi from upstream"))
    completion = sdk.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"}],
        temperature=0.3,
        top_p=0.9,
    )
    assert completion.choices[0].message.content == "Hi from upstream"
    assert completion.model == "fake/answered"
    assert completion.usage is not None and completion.usage.total_tokens == 19
    sent = fake_upstream.completions()[0]
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hello"},
    ]
    assert sent.body["top_p"] == 0.9 and sent.body["temperature"] == 0.3
    assert sent.headers["authorization"] == f"Bearer {SECRET}"


def test_it_streams_a_completion(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(chunks=["Str", "eam", "ed!"]))
    stream = sdk.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "go"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Streamed!"


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
        (502, openai.InternalServerError),
    ],
)
def test_it_raises_the_sdk_error_class(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream, status: int, exception: type[Exception]
) -> None:
    fake_upstream.queue(Reply(status=status, body=error_body(status, f"upstream says no to {SECRET}")))
    with pytest.raises(exception) as raised:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    # a 4xx is the provider's to explain (its key masked); a 5xx stays ours
    assert ("upstream says no to [redacted]" in str(raised.value)) == (status < 500)
    assert SECRET not in str(raised.value)


def test_it_reports_a_mid_stream_error_to_the_sdk(sdk: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(chunks=["a", "b", "c"], stream_error_after=1))
    stream = sdk.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "go"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_it_lists_models_in_openai_shape(sdk: openai.OpenAI) -> None:
    models = list(sdk.models.list())
    assert [m.id for m in models] == ["fake/alpha", "openai/gpt-4o-mini"]
    assert models and all(m.object == "model" and m.owned_by for m in models)


def test_it_counts_v1_usage_in_the_statistics(sdk: openai.OpenAI, http: httpx.Client) -> None:
    before = http.get("/chat/health").json()["usage"]["requests"]
    sdk.chat.completions.create(model="fake/alpha", messages=[{"role": "user", "content": "x"}])
    after = http.get("/chat/health").json()["usage"]
    assert after["requests"] == before + 1
    assert after["by_model"]["fake/alpha"]["completion_tokens"] >= 7


def test_it_retrieves_one_model_whose_id_holds_a_slash(sdk: openai.OpenAI) -> None:
    model = sdk.models.retrieve("openai/gpt-4o-mini")
    assert (model.id, model.object, model.owned_by) == ("openai/gpt-4o-mini", "model", "openai")
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.models.retrieve("nobody/no-such-model")
    assert raised.value.code == "model_not_found"


def _said(role: str, text: str, item_id: str) -> Any:
    return {"type": "message", "role": role, "content": text, "id": item_id}


def test_an_item_id_is_taken_once_and_every_page_of_items_comes_once(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    """A conversation held an id twice (ids are the client's): the SDK's auto-paging resumed `after`
    its first copy for ever; an id over 128 characters was kept, and the page after it could not be
    asked for (review). Now each id is refused twice, as OpenAI does, and ids have the id pattern."""
    with pytest.raises(openai.BadRequestError) as twice:
        sdk.conversations.create(
            items=[_said("user", "one", "msg_same"), _said("assistant", "two", "msg_same")]
        )
    assert twice.value.code == "duplicate_item" and twice.value.param == "items[1].id"
    with pytest.raises(openai.BadRequestError):
        sdk.conversations.create(items=[_said("user", "one", "msg_" + "a" * 200)])
    made = sdk.conversations.create(items=[_said("user", "one", "msg_a"), _said("assistant", "two", "msg_b")])
    with pytest.raises(openai.BadRequestError) as again:
        sdk.conversations.items.create(made.id, items=[_said("user", "three", "msg_a")])
    assert again.value.param == "items[0].id"
    # the function-calling loop sending its output back into the conversation that stored it
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {}},
    }
    fake_upstream.queue(
        Reply(
            content="Let me check.", tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": "{}"}]
        )
    )
    first = sdk.responses.create(
        model="openai/gpt-4o-mini", input="Weather?", tools=[tool], conversation=made.id
    )
    sent_back: list[Any] = [item.to_dict() for item in first.output]
    with pytest.raises(openai.BadRequestError) as resent:
        sdk.responses.create(
            model="openai/gpt-4o-mini",
            tools=[tool],
            conversation=made.id,
            input=[*sent_back, {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
        )
    assert resent.value.code == "duplicate_item" and resent.value.param == "input[0].id"
    sdk.responses.create(
        model="openai/gpt-4o-mini",
        tools=[tool],
        conversation=made.id,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
    )
    whole = sdk.conversations.items.list(made.id, order="asc", limit=100).data
    paged = list(itertools.islice(sdk.conversations.items.list(made.id, order="asc", limit=2), 50))
    assert [i.id for i in paged] == [i.id for i in whole] and len({i.id for i in whole}) == len(whole)
