"""A turn of conversation: the context sent upstream, the call, and the stored result."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

import upstream
from core import telemetry
from core.clock import utc_now_iso
from core.errors import ConversationNotFound, ServiceError, error_body
from gateway import calls, guards, sse
from stores import Conversation, Kind, get_store
from stores.base import CallRecord, TurnWrite, last_turn_start

CHAT_ROLES = ("user", "assistant")


def _estimate_tokens(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"]) // 4 + 4 for m in messages)


def _drop_leading_replies(window: list[dict[str, str]]) -> list[dict[str, str]]:
    while window and window[0]["role"] == "assistant":
        window = window[1:]
    return window


def build_context(history: list[dict[str, Any]], message: str) -> list[dict[str, str]]:
    """System prompt + the last whole turns of history + the new user message."""
    limit = settings.CHAT_HISTORY_MESSAGES
    # Only the text of user and assistant messages: a conversation continued through the Responses
    # API may also hold function calls, their outputs and system messages (gateway.items).
    said = [m for m in history if m.get("type", "message") == "message" and m["role"] in CHAT_ROLES]
    recent = said[-limit:] if limit else []
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


def turn_id_for(
    request_id: str | None, *, kind: Kind, owner: str, conversation_id: str, message: str
) -> str | None:
    """A turn's id, from the X-Request-ID its client sent (None without one: a request id made here
    is never sent twice). A client retrying a turn with the same id and message stores it once; the
    same id with another message is another turn."""
    if request_id is None:
        return None
    seed = "\x00".join((owner, str(kind), conversation_id, request_id, message))
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def turn(user_text: str, reply_text: str, *, model: str | None, tokens: int = 0) -> list[dict[str, Any]]:
    """A stored turn; the reply keeps its tokens, so replacing it can take them off the total."""
    now = utc_now_iso()
    reply: dict[str, Any] = {"role": "assistant", "content": reply_text, "timestamp": now}
    if model:
        reply["model"] = model
    if tokens:
        reply["tokens"] = tokens
    return [{"role": "user", "content": user_text, "timestamp": now}, reply]


@dataclass(frozen=True)
class PreparedTurn:
    owner: str
    conversation_id: str
    call: upstream.UpstreamCall
    replace_last: bool = False
    quota_key: str | None = None  # whose storage quota the stored turn counts against
    turn_id: str | None = None  # see turn_id_for


async def prepare_turn(
    *,
    owner: str,
    message: str,
    conversation_id: str | None,
    model: str | None,
    api_key: str | None,
    max_tokens: int | None,
    temperature: float | None,
    replace_last: bool = False,
    quota_key: str | None = None,
    existing: Conversation | None = None,
    request_id: str | None = None,
) -> PreparedTurn:
    """Every check that can fail before the upstream is called, and the context to send. `existing`
    is the conversation as guards.admit read it (None: new)."""
    model = model or settings.LLM_MODEL
    guards.check_model(model)
    key = guards.resolve_key(api_key)
    tokens = guards.resolve_max_tokens(max_tokens)
    conversation_id = conversation_id or new_conversation_id()
    telemetry.note(conversation_id=conversation_id)
    history = existing.messages if existing else []
    if replace_last:
        if existing is None:
            raise ConversationNotFound()
        history = history[: last_turn_start(history)]
    context = build_context(history, message)
    return PreparedTurn(
        replace_last=replace_last,
        owner=owner,
        conversation_id=conversation_id,
        call=calls.upstream_call(
            context, model=model, max_tokens=tokens, temperature=temperature, api_key=key
        ),
        quota_key=quota_key,
        turn_id=turn_id_for(
            request_id,
            kind=Kind.CHAT,
            owner=owner,
            conversation_id=conversation_id,
            message=("replace\x00" if replace_last else "") + message,
        ),
    )


@dataclass(frozen=True)
class StoredTurn:
    """A finished, stored turn of /chat/message."""

    conversation: Conversation
    reply: str
    model: str
    usage: dict[str, int]


async def store_turn(
    prepared: PreparedTurn,
    message: str,
    content: str,
    model: str,
    usage: dict[str, int],
    *,
    call: CallRecord | None = None,
) -> StoredTurn:
    """Store the turn, and with it the upstream call's statistics (`call`): one write."""
    tokens = usage["total_tokens"]
    messages = turn(message, content, model=model, tokens=tokens)
    conversation = await get_store().commit(
        turn=TurnWrite(
            Kind.CHAT,
            prepared.conversation_id,
            messages,
            owner=prepared.owner,
            model=model,
            tokens=tokens,
            quota_key=None if prepared.replace_last else prepared.quota_key,
            replace_last=prepared.replace_last,
            turn_id=prepared.turn_id,
        ),
        call=call,
    )
    if conversation is None:  # a turn to replace, deleted while the upstream answered
        raise ConversationNotFound()
    return StoredTurn(conversation=conversation, reply=content, model=model, usage=usage)


def replayed_turn(existing: Conversation | None, message: str) -> StoredTurn | None:
    """A turn stored already, its client retrying it (admission saw its turn id): the reply stored for
    it (later turns may follow it), with no upstream call; None when it is no longer there (trimmed),
    or when the same message has several replies (which is its own is not kept): the turn then goes
    upstream again, and is stored once all the same."""
    messages = existing.messages if existing is not None else []
    found = [
        messages[at + 1]
        for at in range(len(messages) - 1)
        if messages[at].get("role") == "user"
        and messages[at].get("content") == message
        and messages[at + 1].get("role") == "assistant"
    ]
    if existing is None or len(found) != 1:
        return None
    return StoredTurn(
        conversation=replace(existing, replayed=True),
        reply=found[0].get("content") or "",
        model=found[0].get("model") or existing.model,
        usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    )


async def replayed_frames(
    stored: StoredTurn, *, done_body: Callable[[StoredTurn], Any]
) -> AsyncIterator[bytes]:
    """A replayed turn as /chat/message streams one: its reply in one delta, then `done`."""
    if stored.reply:
        yield sse.frame("delta", {"delta": stored.reply})
    yield sse.frame("done", done_body(stored))


async def chat(prepared: PreparedTurn, message: str) -> StoredTurn:
    """One turn of /chat/message: stored only when the upstream answered, with its call's figures."""
    completion, usage = await calls.complete(prepared.call)
    call = calls.call_record(completion.model, usage=usage)
    return await store_turn(prepared, message, completion.content, completion.model, usage, call=call)


async def chat_stream(
    prepared: PreparedTurn, message: str, *, done_body: Callable[[StoredTurn], Any]
) -> AsyncIterator[bytes]:
    """Open the upstream stream (failures here get their real status), then frame it as SSE: deltas,
    then `done` with `done_body(turn)` once the turn is stored, or `error`."""
    stream = await calls.open_and_record(prepared.call)
    return _chat_frames(prepared, message, stream, done_body)


async def _chat_frames(
    prepared: PreparedTurn,
    message: str,
    stream: upstream.UpstreamStream,
    done_body: Callable[[StoredTurn], Any],
) -> AsyncIterator[bytes]:
    parts: list[str] = []
    try:
        async with calls.relaying(stream, counted=False):
            async for chunk in stream.chunks():
                text = upstream.delta_text(chunk)
                if text:
                    parts.append(text)
                    yield sse.frame("delta", {"delta": text})
        usage = calls.full_usage(stream.usage)
        call = calls.call_record(stream.model, usage=usage)  # stored with the turn: one write
        # to the end even if the client goes away meanwhile: the upstream has been paid
        stored = await asyncio.shield(
            store_turn(prepared, message, "".join(parts), stream.model, usage, call=call)
        )
    except ServiceError as exc:  # the upstream failed mid-reply, or the store did at the end
        yield sse.frame("error", error_body(exc.code, exc.message))
        return
    yield sse.frame("done", done_body(stored))


async def echo_turn(
    kind: Kind,
    *,
    owner: str,
    message: str,
    conversation_id: str | None,
    reply: str,
    model: str | None,
    quota_key: str | None = None,
) -> Conversation:
    """Store an echo turn (memory-chat, test-chat): no upstream call."""
    conversation_id = conversation_id or new_conversation_id()
    telemetry.note(conversation_id=conversation_id)
    return await get_store().append(
        kind,
        conversation_id,
        turn(message, reply, model=model),
        owner=owner,
        model=model or "echo",
        tokens=0,
        quota_key=quota_key,
    )
