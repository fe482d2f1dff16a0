"""/memory-chat/* and /test-chat/*: echo chats that never call the upstream."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Query, Router
from ninja.responses import Status

from chat import services
from chat.schemas import ConversationListOut, ConversationOut, DeletedOut, MessageIn, Page
from config.clock import utc_now_iso
from config.errors import ErrorOut
from memory_chat.schemas import MemoryChatIn, MemoryChatOut, TestChatOut

router = Router(tags=["memory-chat"])
test_chat_router = Router(tags=["test-chat"])

KIND = "memory"


@router.get("/", response=dict[str, Any], summary="Memory chat info")
async def memory_info(request: HttpRequest) -> dict[str, Any]:
    """What the echo chat is and its endpoints."""
    return {
        "service": "memory-chat",
        "status": "running",
        "description": "Echo chat with conversation memory; never calls the upstream.",
        "active_conversations": await services.count_or_none(KIND),
        "endpoints": {
            "send": "POST /memory-chat/message",
            "conversations": "GET /memory-chat/conversations",
            "conversation": "GET /memory-chat/conversations/{id}",
            "delete": "DELETE /memory-chat/conversations/{id}",
            "clear": "DELETE /memory-chat/conversations",
            "health": "GET /memory-chat/health",
        },
    }


@router.post("/message", response={200: MemoryChatOut, 422: ErrorOut}, summary="Echo a message")
async def memory_message(request: HttpRequest, payload: MemoryChatIn) -> Status[dict[str, Any]]:
    """Store the message and an echo of it."""
    model = payload.model or settings.LLM_MODEL
    reply = f"Echo from memory chat: {payload.message}"
    conversation = await services.echo_turn(
        KIND, message=payload.message, conversation_id=payload.conversation_id, reply=reply, model=model
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


@router.get("/health", response=dict[str, Any], summary="Memory chat health", auth=None)
async def memory_health(request: HttpRequest) -> dict[str, Any]:
    """Liveness; no upstream call."""
    return {
        "status": "healthy",
        "service": "memory-chat",
        "active_conversations": await services.count_or_none(KIND),
        "memory_usage": "in-memory only",
        "file_dependencies": "none",
        "timestamp": utc_now_iso(),
    }


@router.get(
    "/conversations", response={200: ConversationListOut, 422: ErrorOut}, summary="List echo conversations"
)
async def memory_conversations(request: HttpRequest, page: Query[Page]) -> Status[dict[str, Any]]:
    """Echo conversations, most recently active first."""
    return Status(200, await services.list_conversations(KIND, limit=page.limit, offset=page.offset))


@router.get(
    "/conversations/{conversation_id}",
    response={200: ConversationOut, 404: ErrorOut},
    summary="One echo conversation",
)
async def memory_conversation(request: HttpRequest, conversation_id: str) -> Status[dict[str, Any]]:
    """Every stored message of one echo conversation."""
    return Status(200, await services.conversation_detail(KIND, conversation_id))


@router.delete(
    "/conversations/{conversation_id}",
    response={200: DeletedOut, 404: ErrorOut},
    summary="Delete one echo conversation",
)
async def memory_delete(request: HttpRequest, conversation_id: str) -> Status[dict[str, Any]]:
    """Delete one echo conversation."""
    return Status(200, await services.delete_conversation(KIND, conversation_id))


@router.delete("/conversations", response=DeletedOut, summary="Clear every echo conversation")
async def memory_clear(request: HttpRequest) -> dict[str, Any]:
    """Delete every echo conversation."""
    return await services.clear_conversations(KIND)


@test_chat_router.post("/message", response={200: TestChatOut, 422: ErrorOut}, summary="Simple test chat")
async def test_chat_message(request: HttpRequest, payload: MessageIn) -> Status[dict[str, Any]]:
    """Echo a message with a test marker; kept in its own conversations."""
    reply = f"Echo: {payload.message} (Test response from HF Spaces)"
    conversation = await services.echo_turn(
        "test", message=payload.message, conversation_id=payload.conversation_id, reply=reply, model=None
    )
    return Status(
        200,
        {
            "conversation_id": conversation.id,
            "response": reply,
            "status": "success",
            "timestamp": utc_now_iso(),
            "message_count": conversation.message_count,
        },
    )
