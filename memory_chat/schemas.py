from __future__ import annotations

from ninja import Field, Schema

from chat.schemas import MODEL_PATTERN, MessageIn


class MemoryChatIn(MessageIn):
    model: str | None = Field(None, pattern=MODEL_PATTERN, examples=["openai/gpt-4o-mini"])


class MemoryChatOut(Schema):
    conversation_id: str
    response: str
    timestamp: str
    model: str
    status: str = "success"
    message_count: int


class TestChatOut(Schema):
    conversation_id: str
    response: str
    status: str = "success"
    timestamp: str
    message_count: int
