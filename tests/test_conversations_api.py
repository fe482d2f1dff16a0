"""/v1/conversations with the official `openai` SDK, and one conversation model for the whole service:
the chat page's conversations and the Conversations API's are the same ones."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.conversations import Conversation, ConversationItemList

from tests.fake_upstream import FakeUpstream, Reply

MODEL = "openai/gpt-4o-mini"


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


@pytest.fixture
def sdk(live_server_url: str, token: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(
        base_url=f"{live_server_url}/v1",
        api_key="sk-client-token",
        max_retries=0,
        default_headers={"X-Client-Token": token},
    )
    yield client
    client.close()


def texts(listed: Any) -> list[tuple[str, str]]:
    """(role, text) of each message item of a page (or of a list of items)."""
    data = listed if isinstance(listed, list) else listed.data
    return [(item.role, item.content[0].text) for item in data]


def test_it_appends_each_response_to_its_conversation_in_order(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    conversation = sdk.conversations.create(metadata={"topic": "numbers"})
    Conversation.model_validate(conversation.to_dict())
    assert conversation.metadata == {"topic": "numbers"}
    first = sdk.responses.create(model=MODEL, input="one", conversation=conversation.id)
    second = sdk.responses.create(model=MODEL, input="two", conversation={"id": conversation.id})
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert second.output_text == "Fake reply to: two"
    listed = sdk.conversations.items.list(conversation.id, order="asc")
    ConversationItemList.model_validate(listed.to_dict())
    assert texts(listed) == [
        ("user", "one"),
        ("assistant", "Fake reply to: one"),
        ("user", "two"),
        ("assistant", "Fake reply to: two"),
    ]
    assert [item.id for item in listed.data][1] == first.output[0].id  # one item, one id
    assert fake_upstream.completions()[1].body["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Fake reply to: one"},
        {"role": "user", "content": "two"},
    ]
    newest_first = sdk.conversations.items.list(conversation.id, limit=3)
    assert texts(newest_first.data) == texts(listed)[::-1][:3] and newest_first.has_more is True
    assert [texts(page.data) for page in newest_first.iter_pages()][-1] == [("user", "one")]


def test_it_creates_reads_updates_and_deletes_a_conversation(sdk: openai.OpenAI) -> None:
    created = sdk.conversations.create(
        items=[
            {"type": "message", "role": "system", "content": "Speak French."},
            {"role": "user", "content": "Hi"},
        ]
    )
    assert created.metadata == {}
    assert sdk.conversations.retrieve(created.id) == created
    updated = sdk.conversations.update(created.id, metadata={"lang": "fr"})
    assert updated.metadata == {"lang": "fr"} and sdk.conversations.retrieve(created.id).metadata == {
        "lang": "fr"
    }
    added = sdk.conversations.items.create(
        created.id, items=[{"type": "message", "role": "assistant", "content": "Bonjour"}]
    )
    assert texts(added) == [("assistant", "Bonjour")]
    added_id = str(added.data[0].id)
    item = sdk.conversations.items.retrieve(added_id, conversation_id=created.id)
    assert item.id == added_id
    after = sdk.conversations.items.delete(added_id, conversation_id=created.id)
    assert after.id == created.id and after.metadata == {"lang": "fr"}
    assert texts(sdk.conversations.items.list(created.id, order="asc")) == [
        ("system", "Speak French."),
        ("user", "Hi"),
    ]
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.items.retrieve(added_id, conversation_id=created.id)
    deleted = sdk.conversations.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "conversation.deleted")
    for call in (
        lambda: sdk.conversations.retrieve(created.id),
        lambda: sdk.conversations.items.list(created.id),
        lambda: sdk.responses.create(model=MODEL, input="x", conversation=created.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()


def test_it_continues_a_chat_page_conversation_and_back(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream, http: httpx.Client, token: str
) -> None:
    headers = {"X-Client-Token": token}
    started = http.post("/chat/message", json={"message": "from the page"}, headers=headers).json()
    conversation_id = started["conversation_id"]
    response = sdk.responses.create(model=MODEL, input="from the SDK", conversation=conversation_id)
    assert fake_upstream.completions()[1].body["messages"] == [
        {"role": "user", "content": "from the page"},
        {"role": "assistant", "content": "Fake reply to: from the page"},
        {"role": "user", "content": "from the SDK"},
    ]
    assert response.output_text == "Fake reply to: from the SDK"
    http.post(
        "/chat/message", json={"message": "page again", "conversation_id": conversation_id}, headers=headers
    )
    page_context = fake_upstream.completions()[2].body["messages"]
    assert [m["content"] for m in page_context[1:]] == [
        "from the page",
        "Fake reply to: from the page",
        "from the SDK",
        "Fake reply to: from the SDK",
        "page again",
    ]
    listed = sdk.conversations.items.list(conversation_id, order="asc")
    assert [text for _, text in texts(listed)][-2:] == ["page again", "Fake reply to: page again"]
    shown = http.get(f"/chat/conversations/{conversation_id}", headers=headers).json()["conversation"]
    assert shown["message_count"] == 6


def test_it_leaves_function_calls_out_of_a_chat_page_turn(
    sdk: openai.OpenAI, fake_upstream: FakeUpstream, http: httpx.Client, token: str
) -> None:
    conversation = sdk.conversations.create()
    call = {"id": "call_1", "name": "lookup", "arguments": "{}"}
    fake_upstream.queue(Reply(tool_calls=[call]))
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
    sdk.responses.create(model=MODEL, input="look it up", conversation=conversation.id, tools=[tool])  # type: ignore[list-item]
    sdk.conversations.items.create(
        conversation.id, items=[{"type": "function_call_output", "call_id": "call_1", "output": "found"}]
    )
    kinds = [item.type for item in sdk.conversations.items.list(conversation.id, order="asc")]
    assert kinds == ["message", "function_call", "function_call_output"]
    http.post(
        "/chat/message",
        json={"message": "and?", "conversation_id": conversation.id},
        headers={"X-Client-Token": token},
    )
    assert fake_upstream.completions()[-1].body["messages"][1:] == [
        {"role": "user", "content": "look it up"},
        {"role": "user", "content": "and?"},
    ]


def test_it_keeps_each_callers_conversations_apart(sdk: openai.OpenAI, live_server_url: str) -> None:
    mine = sdk.conversations.create(items=[{"role": "user", "content": "secret"}])
    with openai.OpenAI(
        base_url=f"{live_server_url}/v1",
        api_key="x",
        max_retries=0,
        default_headers={"X-Client-Token": "p" * 40},
    ) as other:
        for call in (
            lambda: other.conversations.retrieve(mine.id),
            lambda: other.conversations.items.list(mine.id),
            lambda: other.conversations.delete(mine.id),
            lambda: other.responses.create(model=MODEL, input="x", conversation=mine.id),
        ):
            with pytest.raises(openai.NotFoundError):
                call()
    assert sdk.conversations.retrieve(mine.id).id == mine.id


def test_it_refuses_bad_items_and_metadata(sdk: openai.OpenAI) -> None:
    conversation = sdk.conversations.create()
    for items, param in (
        ([{"type": "reasoning", "summary": []}], "items[0].type"),
        ([{"role": "robot", "content": "x"}] * 1, "items[0]"),
        ([{"role": "user", "content": "x"}] * 21, "items"),
    ):
        with pytest.raises(openai.BadRequestError) as raised:
            sdk.conversations.items.create(conversation.id, items=items)  # type: ignore[arg-type]
        assert (raised.value.param or "").startswith(param)
    with pytest.raises(openai.BadRequestError) as too_many:
        sdk.conversations.create(metadata={f"k{n}": "v" for n in range(17)})
    assert too_many.value.param == "metadata"


def test_it_forgets_the_metadata_when_the_chat_page_deletes_the_conversation(
    sdk: openai.OpenAI, http: httpx.Client, token: str
) -> None:
    headers = {"X-Client-Token": token}
    started = http.post("/chat/message", json={"message": "hi"}, headers=headers).json()
    conversation_id = started["conversation_id"]
    sdk.conversations.update(conversation_id, metadata={"topic": "old"})
    assert http.delete(f"/chat/conversations/{conversation_id}", headers=headers).status_code == 200
    again = http.post(
        "/chat/message", json={"message": "anew", "conversation_id": conversation_id}, headers=headers
    )
    assert again.status_code == 200
    assert sdk.conversations.retrieve(conversation_id).metadata == {}
