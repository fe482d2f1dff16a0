"""A client retrying a turn with the same X-Request-ID (after a 503 that said it may have been stored)
stores it once, on /chat/message and on /v1/responses with a conversation; another request id, or
none, is another turn. On /chat/message the retry is answered as stored, with no upstream call."""

from __future__ import annotations

from typing import Any

from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream, Reply


async def say(client: AsyncClient, text: str, request_id: str | None) -> Any:
    headers = {"X-Request-ID": request_id} if request_id else {}
    body = {"message": text, "conversation_id": "retried"}
    response = await client.post("/chat/message", body, content_type="application/json", headers=headers)
    assert response.status_code == 200
    return response.json()


async def test_it_stores_a_retried_chat_turn_once(client: AsyncClient) -> None:
    assert (await say(client, "hello", "rid-1"))["message_count"] == 2
    assert (await say(client, "hello", "rid-1"))["message_count"] == 2
    assert (await say(client, "hello", "rid-2"))["message_count"] == 4
    assert (await say(client, "other", "rid-2"))["message_count"] == 6
    assert (await say(client, "same", None))["message_count"] == 8
    assert (await say(client, "same", None))["message_count"] == 10
    conversation = (await client.get("/chat/conversations/retried")).json()["conversation"]
    assert [m["content"] for m in conversation["messages"][::2]] == [
        "hello",
        "hello",
        "other",
        "same",
        "same",
    ]


async def test_it_stores_a_retried_response_turn_once(client: AsyncClient) -> None:
    created = await client.post("/v1/conversations", {}, content_type="application/json")
    conversation = created.json()["id"]
    body = {"model": "openai/gpt-4o-mini", "input": "hi", "conversation": conversation}
    for _ in range(2):
        answer = await client.post(
            "/v1/responses", body, content_type="application/json", headers={"X-Request-ID": "resp-retry"}
        )
        assert answer.status_code == 200
    listed = await client.get(f"/v1/conversations/{conversation}/items?order=asc")
    assert [item["role"] for item in listed.json()["data"]] == ["user", "assistant"]


async def test_a_retried_chat_turn_is_answered_as_stored_without_another_upstream_call(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    """The review found a retry paid for upstream again, answered with a reply that was never stored."""
    fake_upstream.queue(Reply(content="the first answer"), Reply(content="another answer"))
    first = await say(client, "hello", "rid-9")
    assert first["response"] == "the first answer"
    again = await say(client, "hello", "rid-9")
    assert again["response"] == "the first answer" and again["message_count"] == 2
    assert again["usage"]["total_tokens"] == 0
    streamed: Any = await client.post(
        "/chat/message",
        {"message": "hello", "conversation_id": "retried", "stream": True},
        content_type="application/json",
        headers={"X-Request-ID": "rid-9"},
    )
    text = b"".join([part async for part in streamed.streaming_content]).decode()
    assert '"delta": "the first answer"' in text.replace('":"', '": "') and "event: done" in text
    assert len(fake_upstream.completions()) == 1
    # a turn since: the retried one is found further back, and still answered as stored
    assert (await say(client, "later", "rid-10"))["message_count"] == 4
    assert (await say(client, "hello", "rid-9"))["response"] == "the first answer"
    assert len(fake_upstream.completions()) == 2


async def test_a_retry_whose_message_has_several_replies_goes_upstream_and_is_stored_once(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    """Which of several replies to the same text is the retried turn's own is not kept: never another
    turn's reply; the turn goes upstream again, stored once (found by the second review)."""
    fake_upstream.queue(Reply(content="first answer"), Reply(content="second answer"), Reply(content="third"))
    assert (await say(client, "continue", "rid-a"))["response"] == "first answer"
    assert (await say(client, "continue", "rid-b"))["response"] == "second answer"
    assert (await say(client, "continue", "rid-a"))["response"] == "third"
    conversation = (await client.get("/chat/conversations/retried")).json()["conversation"]
    assert [m["content"] for m in conversation["messages"]] == [
        "continue",
        "first answer",
        "continue",
        "second answer",
    ]
    assert len(fake_upstream.completions()) == 3


async def test_a_retried_response_turn_whose_input_has_ids_is_stored_once_not_refused(
    client: AsyncClient,
) -> None:
    """Its items (with their ids) stored by the first attempt, the retry was refused as repeating them
    (400 duplicate_item): a turn retried with its X-Request-ID is stored once, and answered (review)."""
    created = await client.post("/v1/conversations", {}, content_type="application/json")
    conversation = created.json()["id"]
    body = {
        "model": "openai/gpt-4o-mini",
        "conversation": conversation,
        "input": [{"type": "message", "role": "user", "content": "hi", "id": "msg_client_1"}],
    }
    answers = []
    for _ in range(2):
        answer = await client.post(
            "/v1/responses", body, content_type="application/json", headers={"X-Request-ID": "resp-retry-ids"}
        )
        answers.append((answer.status_code, (answer.json().get("error") or {}).get("code")))
    assert answers == [(200, None), (200, None)]
    listed = await client.get(f"/v1/conversations/{conversation}/items?order=asc")
    assert [item["role"] for item in listed.json()["data"]] == ["user", "assistant"]
