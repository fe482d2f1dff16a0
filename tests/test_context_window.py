"""What is sent upstream as context: system prompt, the last whole turns, the new message."""

from __future__ import annotations

from typing import Any

from django.test import AsyncClient

from tests.fake_upstream import FakeUpstream


async def say(client: AsyncClient, text: str, conversation_id: str = "ctx") -> Any:
    response = await client.post(
        "/chat/message",
        {"message": text, "conversation_id": conversation_id},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return response.json()


async def test_it_sends_the_system_prompt_first(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.CHAT_SYSTEM_PROMPT = "Be brief."
    await say(client, "hi")
    sent = fake_upstream.completions()[0].body["messages"]
    assert sent == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


async def test_it_sends_no_system_message_when_the_prompt_is_empty(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.CHAT_SYSTEM_PROMPT = ""
    await say(client, "hi")
    assert fake_upstream.completions()[0].body["messages"] == [{"role": "user", "content": "hi"}]


async def test_it_sends_the_last_ten_stored_messages(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    for n in range(8):
        await say(client, f"m{n}")
    await say(client, "now")
    sent = fake_upstream.completions()[-1].body["messages"]
    assert sent[0]["role"] == "system"
    history = sent[1:-1]
    assert len(history) == 10
    assert [m["content"] for m in history[::2]] == ["m3", "m4", "m5", "m6", "m7"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 5
    assert history[1]["content"] == "Fake reply to: m3"
    assert sent[-1] == {"role": "user", "content": "now"}


async def test_it_never_starts_the_window_with_a_reply(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.CHAT_HISTORY_MESSAGES = 3
    for n in range(3):
        await say(client, f"m{n}")
    await say(client, "now")
    sent = fake_upstream.completions()[-1].body["messages"][1:]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "m2"


async def test_it_drops_old_turns_to_fit_the_token_budget(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.CHAT_SYSTEM_PROMPT = ""
    for n in range(4):
        await say(client, f"{n}" * 200)
    settings.CHAT_CONTEXT_TOKENS = 150
    await say(client, "now")
    sent = fake_upstream.completions()[-1].body["messages"]
    assert sent[-1]["content"] == "now"
    assert sent[0]["role"] == "user"
    assert sum(len(m["content"]) // 4 + 4 for m in sent) <= 150
    assert len(sent) < 9


async def test_it_passes_model_temperature_and_max_tokens(
    client: AsyncClient, fake_upstream: FakeUpstream
) -> None:
    body = {"message": "hi", "model": "anthropic/claude-3-haiku", "temperature": 0.2, "max_tokens": 50}
    response = await client.post("/chat/message", body, content_type="application/json")
    assert response.status_code == 200
    sent = fake_upstream.completions()[0].body
    assert (sent["model"], sent["temperature"], sent["max_tokens"], sent["stream"]) == (
        "anthropic/claude-3-haiku",
        0.2,
        50,
        False,
    )


async def test_it_uses_the_configured_defaults(
    client: AsyncClient, fake_upstream: FakeUpstream, settings: Any
) -> None:
    settings.LLM_MODEL = "meta-llama/llama-3.1-8b-instruct"
    settings.LLM_TEMPERATURE = 1.3
    settings.LLM_MAX_TOKENS = 321
    await say(client, "hi")
    sent = fake_upstream.completions()[0].body
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == (
        "meta-llama/llama-3.1-8b-instruct",
        1.3,
        321,
    )
