"""Shapes of /memory-chat/*."""

from __future__ import annotations

from ninja import Field, Schema

from gateway.schemas import MODEL_PATTERN, MessageIn


class MemoryChatIn(MessageIn):
    model: str | None = Field(None, pattern=MODEL_PATTERN, examples=["openai/gpt-4o-mini"])


class MemoryChatOut(Schema):
    conversation_id: str
    response: str
    timestamp: str
    model: str
    status: str = "success"
    message_count: int


class MemoryEndpoints(Schema):
    send: str = "POST /memory-chat/message"
    conversations: str = "GET /memory-chat/conversations"
    conversation: str = "GET /memory-chat/conversations/{id}"
    delete: str = "DELETE /memory-chat/conversations/{id}"
    clear: str = "DELETE /memory-chat/conversations"
    health: str = "GET /memory-chat/health"


class MemoryInfoOut(Schema):
    service: str = Field(..., examples=["memory-chat"])
    status: str = Field(..., examples=["running"])
    description: str
    active_conversations: int | None = Field(..., examples=[2])
    endpoints: MemoryEndpoints


class MemoryHealthOut(Schema):
    status: str = Field(..., examples=["healthy"])
    service: str = Field(..., examples=["memory-chat"])
    active_conversations: int | None = Field(..., examples=[2])
    memory_usage: str = Field(..., examples=["in-memory only"])
    file_dependencies: str = Field(..., examples=["none"])
    timestamp: str
