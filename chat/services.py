"""Chat logic: context windows, upstream calls, storing turns, conversation views."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from django.conf import settings

from chat import upstream
from chat.store import Conversation, get_store
from config.clock import utc_now_iso
from config.errors import BadRequest, ConversationNotFound, ServiceError

logger = logging.getLogger(__name__)

PREVIEW_CHARS = 200


class ApiKeyRequired(ServiceError):
    status = 401
    code = "api_key_required"

    def __init__(self) -> None:
        super().__init__(
            "An API key is required: set LLM_API_KEY on the server or send api_key in the request."
        )


def resolve_key(request_key: str | None) -> str:
    key = (request_key or "").strip() or settings.LLM_API_KEY
    if not key and upstream.key_required():
        raise ApiKeyRequired()
    return key


def resolve_max_tokens(requested: int | None) -> int:
    if requested is None:
        return settings.LLM_MAX_TOKENS
    if requested > settings.LLM_MAX_TOKENS_LIMIT:
        raise BadRequest(
            f"max_tokens may be at most {settings.LLM_MAX_TOKENS_LIMIT}.", code="max_tokens_too_large"
        )
    return requested


def _estimate_tokens(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"]) // 4 + 4 for m in messages)


def _drop_leading_replies(window: list[dict[str, str]]) -> list[dict[str, str]]:
    while window and window[0]["role"] == "assistant":
        window = window[1:]
    return window


def build_context(history: list[dict[str, Any]], message: str) -> list[dict[str, str]]:
    """System prompt + the last whole turns of history + the new user message."""
    limit = settings.CHAT_HISTORY_MESSAGES
    recent = history[-limit:] if limit else []
    window = _drop_leading_replies([{"role": m["role"], "content": m["content"]} for m in recent])
    system = (
        [{"role": "system", "content": settings.CHAT_SYSTEM_PROMPT}] if settings.CHAT_SYSTEM_PROMPT else []
    )
    new = [{"role": "user", "content": message}]
    budget = settings.CHAT_CONTEXT_TOKENS
    if budget:
        while window and _estimate_tokens(system + window + new) > budget:
            window = _drop_leading_replies(window[1:])
    return system + window + new


def new_conversation_id() -> str:
    return str(uuid.uuid4())


def turn(user_text: str, reply_text: str, *, model: str | None) -> list[dict[str, Any]]:
    now = utc_now_iso()
    reply: dict[str, Any] = {"role": "assistant", "content": reply_text, "timestamp": now}
    if model:
        reply["model"] = model
    return [{"role": "user", "content": user_text, "timestamp": now}, reply]


async def complete_and_record(
    *,
    messages: list[dict[str, str]],
    model: str,
    max_tokens: int,
    temperature: float | None,
    api_key: str,
) -> tuple[upstream.Completion, dict[str, int]]:
    """Call the upstream and count the call (tokens, or the error's kind) in the statistics."""
    store = get_store()
    try:
        completion = await upstream.complete(
            messages=messages,
            model=model,
            max_tokens=max_tokens,
            temperature=settings.LLM_TEMPERATURE if temperature is None else temperature,
            api_key=api_key,
        )
    except ServiceError as exc:
        await store.record_call(model, prompt_tokens=0, completion_tokens=0, error=exc.code)
        raise
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, **completion.usage}
    await store.record_call(
        completion.model,
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        error=None,
    )
    return completion, usage


async def chat(
    *,
    message: str,
    conversation_id: str | None,
    model: str | None,
    api_key: str | None,
    max_tokens: int | None,
    temperature: float | None,
) -> dict[str, Any]:
    """One turn of /chat/message: stored only when the upstream answered."""
    key = resolve_key(api_key)
    tokens = resolve_max_tokens(max_tokens)
    model = model or settings.LLM_MODEL
    conversation_id = conversation_id or new_conversation_id()
    store = get_store()
    existing = await store.get("chat", conversation_id)
    context = build_context(existing.messages if existing else [], message)
    started = time.perf_counter()
    try:
        completion, usage = await complete_and_record(
            messages=context,
            model=model,
            max_tokens=tokens,
            temperature=temperature,
            api_key=key,
        )
    except ServiceError as exc:
        logger.info("chat failed conversation=%s model=%s code=%s", conversation_id, model, exc.code)
        raise
    conversation = await store.append(
        "chat",
        conversation_id,
        turn(message, completion.content, model=completion.model),
        model=completion.model,
        tokens=usage["total_tokens"],
    )
    logger.info(
        "chat ok conversation=%s model=%s tokens=%s upstream_ms=%.1f",
        conversation_id,
        completion.model,
        usage["total_tokens"],
        (time.perf_counter() - started) * 1000,
    )
    return {
        "conversation_id": conversation_id,
        "response": completion.content,
        "model": completion.model,
        "timestamp": utc_now_iso(),
        "usage": usage,
        "status": "success",
        "message_count": conversation.message_count,
        "total_tokens": conversation.total_tokens,
    }


async def test_upstream(*, message: str, model: str | None, api_key: str | None) -> dict[str, Any]:
    """One message to the upstream, no memory: what did it say?"""
    key = resolve_key(api_key)
    model = model or settings.LLM_MODEL
    completion, usage = await complete_and_record(
        messages=[{"role": "user", "content": message}],
        model=model,
        max_tokens=settings.LLM_MAX_TOKENS,
        temperature=None,
        api_key=key,
    )
    return {
        "status": "success",
        "request_message": message,
        "response_message": completion.content,
        "model_used": completion.model,
        "timestamp": utc_now_iso(),
        "usage": usage,
        "openrouter_response": {
            "id": completion.id,
            "model": completion.model,
            "provider": completion.provider,
            "finish_reason": completion.finish_reason,
        },
    }


async def echo_turn(
    kind: str, *, message: str, conversation_id: str | None, reply: str, model: str | None
) -> Conversation:
    """Store an echo turn (memory-chat, test-chat): no upstream call."""
    conversation_id = conversation_id or new_conversation_id()
    return await get_store().append(
        kind, conversation_id, turn(message, reply, model=model), model=model or "echo", tokens=0
    )


def summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "message_count": conversation.message_count,
        "model": conversation.model,
        "total_tokens": conversation.total_tokens,
        "last_message": conversation.last_message[:PREVIEW_CHARS],
        "dropped_messages": conversation.dropped_messages,
    }


async def list_conversations(kind: str, *, limit: int, offset: int) -> dict[str, Any]:
    total, page = await get_store().page(kind, limit=limit, offset=offset)
    return {
        "status": "success",
        "total_conversations": total,
        "total": total,
        "limit": limit,
        "offset": offset,
        "conversations": [summary(c) for c in page],
    }


async def conversation_detail(kind: str, conversation_id: str) -> dict[str, Any]:
    conversation = await get_store().get(kind, conversation_id)
    if conversation is None:
        raise ConversationNotFound()
    detail = summary(conversation)
    del detail["last_message"]
    detail["messages"] = conversation.messages
    return {"status": "success", "conversation": detail}


async def delete_conversation(kind: str, conversation_id: str) -> dict[str, Any]:
    store = get_store()
    if not await store.delete(kind, conversation_id):
        raise ConversationNotFound()
    return {
        "status": "success",
        "message": f"Deleted conversation {conversation_id}",
        "remaining_conversations": await store.count(kind),
    }


async def clear_conversations(kind: str) -> dict[str, Any]:
    removed = await get_store().clear(kind)
    return {
        "status": "success",
        "message": f"Cleared {removed} conversations from memory",
        "remaining_conversations": 0,
    }
