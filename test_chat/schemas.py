"""Shapes of /test-chat/*."""

from __future__ import annotations

from ninja import Schema


class TestChatOut(Schema):
    conversation_id: str
    response: str
    status: str = "success"
    timestamp: str
    message_count: int
