"""/test-chat/*: a simple echo chat with a test marker, kept in its own conversations."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router
from ninja.responses import Status

from core.auth import owner_for_writing
from core.clock import utc_now_iso
from core.errors import ErrorOut
from gateway import guards, turns
from gateway.schemas import MessageIn
from stores import Kind
from test_chat.schemas import TestChatOut

router = Router(tags=["test-chat"])


@router.post(
    "/message",
    response={200: TestChatOut, 422: ErrorOut, 429: ErrorOut, 503: ErrorOut},
    summary="Simple test chat",
)
async def test_chat_message(request: HttpRequest, payload: MessageIn) -> Status[dict[str, Any]]:
    """Echo a message with a test marker; kept in its own conversations (counted like memory-chat's)."""
    await guards.check_rate(request)
    reply = f"Echo: {payload.message} (Test response from HF Spaces)"
    conversation = await turns.echo_turn(
        Kind.TEST,
        owner=owner_for_writing(request),
        message=payload.message,
        conversation_id=payload.conversation_id,
        reply=reply,
        model=None,
        quota_key=guards.client_identity(request),
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
