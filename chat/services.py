"""Chat logic: context windows, upstream calls, storing turns, conversation views."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat import limits, sse, upstream
from chat.store import Conversation, get_store
from config import metrics, telemetry
from config.clock import utc_now_iso
from config.errors import BadRequest, ConversationNotFound, ServiceError, StoreUnavailable, error_body

logger = logging.getLogger(__name__)

PREVIEW_CHARS = 200
KEY_SHAPE = re.compile(r"[\x21-\x7e]{1,512}")  # printable ASCII: what an HTTP header can carry


class ApiKeyRequired(ServiceError):
    status = 401
    code = "api_key_required"

    def __init__(self) -> None:
        super().__init__(
            "An API key is required: set LLM_API_KEY on the server or send api_key in the request."
        )


def resolve_key(request_key: str | None) -> str:
    """The client's key if it sent one (and they are allowed), else the server's."""
    request_key = (request_key or "").strip()
    if request_key and not settings.ALLOW_CLIENT_API_KEY:
        raise BadRequest(
            "This server does not accept api_key in requests.", code="client_api_key_not_allowed"
        )
    if request_key and not KEY_SHAPE.fullmatch(request_key):
        raise BadRequest("That API key has characters no key can have.", code="invalid_api_key")
    key = request_key or settings.LLM_API_KEY
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


async def record(model: str, *, usage: dict[str, int] | None = None, error: str | None = None) -> None:
    """Count one upstream call (its tokens, or its error's kind) in the statistics and the access line."""
    usage = usage or {}
    await get_store().record_call(
        model,
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        error=error,
    )
    telemetry.note(model=model, tokens=usage.get("total_tokens", 0), **({"error": error} if error else {}))


def upstream_call(
    messages: list[dict[str, Any]],
    *,
    model: str,
    max_tokens: int,
    temperature: float | None,
    api_key: str,
    extra: dict[str, Any] | None = None,
) -> upstream.UpstreamCall:
    return upstream.UpstreamCall(
        messages=messages,
        model=model,
        max_tokens=max_tokens,
        temperature=settings.LLM_TEMPERATURE if temperature is None else temperature,
        api_key=api_key,
        extra=extra or {},
    )


async def complete_and_record(call: upstream.UpstreamCall) -> tuple[upstream.Completion, dict[str, int]]:
    """A non-streaming upstream call, counted."""
    try:
        completion = await upstream.complete(call)
    except ServiceError as exc:
        await record(call.model, error=exc.code)
        raise
    usage = full_usage(completion.usage)
    await record(completion.model, usage=usage)
    return completion, usage


async def open_and_record(call: upstream.UpstreamCall) -> upstream.UpstreamStream:
    """Open a streaming upstream call; a failure to open is counted."""
    try:
        return await upstream.open_stream(call)
    except ServiceError as exc:
        await record(call.model, error=exc.code)
        raise


async def relay(stream: upstream.UpstreamStream) -> AsyncIterator[dict[str, Any]]:
    """The chunks of an open stream. The call is counted when it ends, and the upstream connection is
    closed whatever happens: at once if our client goes away, so nobody pays for unread tokens."""
    metrics.STREAMS_IN_FLIGHT.inc()
    try:
        async for chunk in stream.chunks():
            yield chunk
    except ServiceError as exc:
        await record(stream.model, error=exc.code)
        raise
    except (asyncio.CancelledError, GeneratorExit):
        await record(stream.model, error="client_disconnected")
        logger.info(
            "client disconnected mid-stream; upstream request closed, nothing stored conversation=%s",
            telemetry.current().get("conversation_id", "-"),
        )
        telemetry.note(disconnected=True)
        raise
    finally:
        metrics.STREAMS_IN_FLIGHT.dec()
        await stream.aclose()
    await record(stream.model, usage=full_usage(stream.usage))


@dataclass(frozen=True)
class PreparedTurn:
    conversation_id: str
    call: upstream.UpstreamCall


async def prepare_turn(
    *,
    message: str,
    conversation_id: str | None,
    model: str | None,
    api_key: str | None,
    max_tokens: int | None,
    temperature: float | None,
) -> PreparedTurn:
    """Every check that can fail before the upstream is called, and the context to send."""
    model = model or settings.LLM_MODEL
    limits.check_model(model)
    key = resolve_key(api_key)
    tokens = resolve_max_tokens(max_tokens)
    conversation_id = conversation_id or new_conversation_id()
    telemetry.note(conversation_id=conversation_id)
    existing = await get_store().get("chat", conversation_id)
    context = build_context(existing.messages if existing else [], message)
    return PreparedTurn(
        conversation_id=conversation_id,
        call=upstream_call(context, model=model, max_tokens=tokens, temperature=temperature, api_key=key),
    )


async def store_turn(
    turn_in: PreparedTurn, message: str, content: str, model: str, usage: dict[str, int]
) -> dict[str, Any]:
    """Store a finished turn; the body /chat/message answers with."""
    conversation = await get_store().append(
        "chat",
        turn_in.conversation_id,
        turn(message, content, model=model),
        model=model,
        tokens=usage["total_tokens"],
    )
    return {
        "conversation_id": turn_in.conversation_id,
        "response": content,
        "model": model,
        "timestamp": utc_now_iso(),
        "usage": usage,
        "status": "success",
        "message_count": conversation.message_count,
        "total_tokens": conversation.total_tokens,
    }


def full_usage(usage: dict[str, int]) -> dict[str, int]:
    merged = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, **usage}
    if not usage.get("total_tokens"):
        merged["total_tokens"] = merged["prompt_tokens"] + merged["completion_tokens"]
    return merged


async def chat(prepared: PreparedTurn, message: str) -> dict[str, Any]:
    """One turn of /chat/message: stored only when the upstream answered."""
    completion, usage = await complete_and_record(prepared.call)
    return await store_turn(prepared, message, completion.content, completion.model, usage)


async def chat_stream(prepared: PreparedTurn, message: str) -> AsyncIterator[bytes]:
    """Open the upstream stream (failures here get their real status), then frame it."""
    stream = await open_and_record(prepared.call)
    return _chat_frames(prepared, message, stream)


async def _chat_frames(
    prepared: PreparedTurn, message: str, stream: upstream.UpstreamStream
) -> AsyncIterator[bytes]:
    parts: list[str] = []
    try:
        async for chunk in relay(stream):
            text = upstream.delta_text(chunk)
            if text:
                parts.append(text)
                yield sse.frame("delta", {"delta": text})
        usage = full_usage(stream.usage)
        done = await store_turn(prepared, message, "".join(parts), stream.model, usage)
    except ServiceError as exc:  # the upstream failed mid-reply, or the store did at the end
        yield sse.frame("error", error_body(exc.code, exc.message))
        return
    yield sse.frame("done", done)


async def test_upstream(*, message: str, model: str | None, api_key: str | None) -> dict[str, Any]:
    """One message to the upstream, no memory: what did it say?"""
    model = model or settings.LLM_MODEL
    limits.check_model(model)
    key = resolve_key(api_key)
    call = upstream_call(
        [{"role": "user", "content": message}],
        model=model,
        max_tokens=settings.LLM_MAX_TOKENS,
        temperature=None,
        api_key=key,
    )
    completion, usage = await complete_and_record(call)
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


async def count_or_none(kind: str) -> int | None:
    """A figure for health and info answers: None while the store is down, never an error."""
    try:
        return await get_store().count(kind)
    except StoreUnavailable:
        return None


async def usage_or_none() -> dict[str, Any] | None:
    try:
        return await get_store().usage()
    except StoreUnavailable:
        return None


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
