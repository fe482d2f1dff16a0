"""Regenerate and edit-and-resend (`replace_last`), titles, and export of a /chat conversation."""

from __future__ import annotations

import json
from typing import Any

from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream, Reply


async def say(client: AsyncClient, text: str, **extra: Any) -> Any:
    body = {"message": text, "conversation_id": "edit-me", **extra}
    return await client.post("/chat/message", body, content_type="application/json")


async def stored(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/chat/conversations/edit-me")
    assert response.status_code == 200
    return response.json()["conversation"]


async def test_it_regenerates_the_last_reply_in_its_place(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    await say(client, "First question")
    await say(client, "Second question")
    fake_upstream.queue(Reply(content="A better answer"))
    regenerated = await say(client, "Second question", replace_last=True)
    assert regenerated.status_code == 200 and regenerated.json()["message_count"] == 4
    sent = fake_upstream.completions()[-1].body["messages"]
    assert [m["content"] for m in sent if m["role"] != "system"] == [
        "First question",
        "Fake reply to: First question",
        "Second question",
    ]
    conversation = await stored(client)
    assert [m["content"] for m in conversation["messages"]] == [
        "First question",
        "Fake reply to: First question",
        "Second question",
        "A better answer",
    ]
    first_tokens = fake_upstream.completions()[0]  # every fake completion reports the same usage
    assert first_tokens and conversation["total_tokens"] == 2 * regenerated.json()["usage"]["total_tokens"]


async def test_it_edits_and_resends_the_last_message(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    await say(client, "Waht is 2+2?")
    edited = await say(client, "What is 2+2?", replace_last=True, stream=True)
    assert edited.status_code == 200
    body = b"".join([part async for part in edited.streaming_content])
    assert b"event: done" in body
    conversation = await stored(client)
    assert [m["content"] for m in conversation["messages"]] == ["What is 2+2?", "Fake reply to: What is 2+2?"]
    assert conversation["message_count"] == 2 and conversation["title"] == "What is 2+2?"


async def test_it_replaces_nothing_that_does_not_exist(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    response = await say(client, "hello", replace_last=True)
    assert response.status_code == 404 and response.json()["code"] == "conversation_not_found"
    assert fake_upstream.completions() == []


async def test_it_titles_conversations_by_the_first_question(client: AsyncClient) -> None:
    await say(client, "  How do I\n boil an egg?")
    await say(client, "And a duck egg?")
    listed = (await client.get("/chat/conversations")).json()["conversations"]
    assert [c["title"] for c in listed] == ["How do I boil an egg?"]
    assert listed[0]["last_message"] == "Fake reply to: And a duck egg?"


async def test_it_exports_markdown_and_json(client: AsyncClient) -> None:
    await say(client, "Export **me**")
    markdown = await client.get("/chat/conversations/edit-me/export")
    assert markdown.status_code == 200
    assert markdown["Content-Type"].startswith("text/markdown")
    assert markdown["Content-Disposition"] == 'attachment; filename="conversation-edit-me.md"'
    text = markdown.content.decode()
    assert text.startswith("# Export **me**\n")
    assert "## You, " in text and "\nExport **me**\n" in text and "Fake reply to: Export **me**" in text
    exported = await client.get("/chat/conversations/edit-me/export", {"format": "json"})
    assert exported["Content-Disposition"] == 'attachment; filename="conversation-edit-me.json"'
    assert json.loads(exported.content) == {"status": "success", "conversation": await stored(client)}
    missing = await client.get("/chat/conversations/nope/export")
    assert missing.status_code == 404
    bad = await client.get("/chat/conversations/edit-me/export", {"format": "pdf"})
    assert bad.status_code == 422


async def test_it_exports_function_calls_as_code_blocks(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    created = await client.post("/v1/conversations", {}, content_type="application/json")
    conversation = created.json()["id"]
    call = {"id": "call_1", "name": "lookup", "arguments": '{"q": "```"}'}
    fake_upstream.queue(Reply(tool_calls=[call]))
    tool = {"type": "function", "name": "lookup"}
    answered = await client.post(
        "/v1/responses",
        {"input": "Find it", "conversation": conversation, "tools": [tool]},
        content_type="application/json",
    )
    assert answered.status_code == 200
    await client.post(
        f"/v1/conversations/{conversation}/items",
        {"items": [{"type": "function_call_output", "call_id": "call_1", "output": "found"}]},
        content_type="application/json",
    )
    text = (await client.get(f"/chat/conversations/{conversation}/export")).content.decode()
    assert "## Function call lookup (call_1), " in text
    assert '\n````\n{"q": "```"}\n````\n' in text  # a fence the arguments' backticks cannot close
    assert "## Function result (call_1), " in text and "\n```\nfound\n```\n" in text
    detail = (await client.get(f"/chat/conversations/{conversation}")).json()["conversation"]["messages"]
    assert [(m["role"], m["type"], m["name"]) for m in detail] == [
        ("user", None, None),
        ("assistant", "function_call", "lookup"),
        ("tool", "function_call_output", None),
    ]
