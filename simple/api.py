"""/api/simple/*: a stateless echo conversation and its health check."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.responses import Status

from core.errors import ErrorOut
from gateway import turns
from gateway.schemas import MessageIn

router = Router(tags=["simple"])


class SimpleHealthOut(Schema):
    status: str = Field(..., examples=["healthy"])
    service: str = Field(..., examples=["simple-conversation"])
    message: str = Field(..., examples=["Simple conversation API is running"])


class SimpleOut(Schema):
    conversation_id: str
    status: str = "success"
    message: str
    response: str
    user_message: str


@router.get("/health", response=SimpleHealthOut, summary="Simple health check", auth=None)
async def simple_health(request: HttpRequest) -> dict[str, Any]:
    """Liveness; no upstream call."""
    return {
        "status": "healthy",
        "service": "simple-conversation",
        "message": "Simple conversation API is running",
    }


@router.post("/conversation", response={200: SimpleOut, 422: ErrorOut}, summary="Simple conversation test")
async def simple_conversation(request: HttpRequest, payload: MessageIn) -> Status[dict[str, Any]]:
    """Echo a message; nothing is stored."""
    return Status(
        200,
        {
            "conversation_id": payload.conversation_id or turns.new_conversation_id(),
            "status": "success",
            "message": "Conversation created successfully",
            "response": f"Echo: {payload.message}",
            "user_message": payload.message,
        },
    )
