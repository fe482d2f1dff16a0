"""/memory-chat/*: an echo chat with conversation memory that never calls the upstream."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Query, Router
from ninja.responses import Status

from core.auth import caller_of, owner_for_writing
from core.clock import utc_now_iso
from core.errors import ErrorOut
from gateway import conversations, guards, turns
from gateway.schemas import (
    ConversationListOut,
    ConversationOut,
    DeletedOut,
    OwnerQuery,
    Page,
    conversation_detail,
    conversation_list,
    deleted,
)
from memory_chat.schemas import MemoryChatIn, MemoryChatOut, MemoryHealthOut, MemoryInfoOut
from stores import Kind

router = Router(tags=["memory-chat"])


@router.get("/", response=MemoryInfoOut, summary="Memory chat info")
async def memory_info(request: HttpRequest) -> dict[str, Any]:
    """What the echo chat is and its endpoints."""
    return {
        "service": "memory-chat",
        "status": "running",
        "description": "Echo chat with conversation memory; never calls the upstream.",
        "active_conversations": await conversations.count_or_none(Kind.MEMORY),
        "endpoints": {},
    }


@router.post(
    "/message",
    response={200: MemoryChatOut, 422: ErrorOut, 429: ErrorOut, 503: ErrorOut},
    summary="Echo a message",
)
async def memory_message(request: HttpRequest, payload: MemoryChatIn) -> Status[dict[str, Any]]:
    """Store the message and an echo of it (counted against the client's rate limit and storage)."""
    await guards.check_rate(request)
    model = payload.model or settings.LLM_MODEL
    reply = f"Echo from memory chat: {payload.message}"
    conversation = await turns.echo_turn(
        Kind.MEMORY,
        owner=owner_for_writing(request),
        message=payload.message,
        conversation_id=payload.conversation_id,
        reply=reply,
        model=model,
        quota_key=guards.client_identity(request),
    )
    return Status(
        200,
        {
            "conversation_id": conversation.id,
            "response": reply,
            "timestamp": utc_now_iso(),
            "model": model,
            "status": "success",
            "message_count": conversation.message_count,
        },
    )


@router.get("/health", response=MemoryHealthOut, summary="Memory chat health", auth=None)
async def memory_health(request: HttpRequest) -> dict[str, Any]:
    """Liveness; no upstream call."""
    return {
        "status": "healthy",
        "service": "memory-chat",
        "active_conversations": await conversations.count_or_none(Kind.MEMORY),
        "memory_usage": "in-memory only",
        "file_dependencies": "none",
        "timestamp": utc_now_iso(),
    }


@router.get(
    "/conversations", response={200: ConversationListOut, 422: ErrorOut}, summary="List echo conversations"
)
async def memory_conversations(request: HttpRequest, page: Query[Page]) -> Status[dict[str, Any]]:
    """Echo conversations, most recently active first."""
    total, found = await conversations.page(
        Kind.MEMORY, caller_of(request), limit=page.limit, offset=page.offset
    )
    return Status(200, conversation_list(total, found, page))


@router.get(
    "/conversations/{conversation_id}",
    response={200: ConversationOut, 404: ErrorOut},
    summary="One echo conversation",
)
async def memory_conversation(
    request: HttpRequest, conversation_id: str, whose: Query[OwnerQuery]
) -> Status[dict[str, Any]]:
    """Every stored message of one echo conversation."""
    return Status(
        200,
        conversation_detail(
            await conversations.get(Kind.MEMORY, conversation_id, caller_of(request), owner=whose.owner)
        ),
    )


@router.delete(
    "/conversations/{conversation_id}",
    response={200: DeletedOut, 404: ErrorOut},
    summary="Delete one echo conversation",
)
async def memory_delete(
    request: HttpRequest, conversation_id: str, whose: Query[OwnerQuery]
) -> Status[dict[str, Any]]:
    """Delete one echo conversation."""
    remaining = await conversations.delete(
        Kind.MEMORY, conversation_id, caller_of(request), owner=whose.owner
    )
    return Status(200, deleted(conversation_id, remaining))


@router.delete("/conversations", response=DeletedOut, summary="Clear your echo conversations")
async def memory_clear(request: HttpRequest) -> dict[str, Any]:
    """Delete every echo conversation the caller owns (an admin's own, too: others' one at a time)."""
    removed = await conversations.clear(Kind.MEMORY, caller_of(request))
    return {
        "status": "success",
        "message": f"Cleared {removed} conversations from memory",
        "remaining_conversations": 0,
    }
