"""Shapes several routers share: a message in, conversations out, paging, token usage."""

from __future__ import annotations

from typing import Any, Literal

from django.conf import settings
from ninja import Field, Schema
from ninja.responses import Status
from pydantic import field_validator

from gateway.status import Readiness
from stores import Conversation

CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$"
PREVIEW_CHARS = 200


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class MessageIn(Schema):
    message: str = Field(
        ..., min_length=1, max_length=settings.MESSAGE_MAX_CHARS, examples=["Hello! How can you help me?"]
    )
    conversation_id: str | None = Field(
        None, pattern=CONVERSATION_ID_PATTERN, description="Continue this conversation; omit to start one."
    )

    _message_not_blank = field_validator("message")(not_blank)


class Usage(Schema):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class MessageOut(Schema):
    role: str
    content: str
    timestamp: str
    model: str | None = None
    # a function call (role assistant) or its output (role tool), kept by /v1/responses: absent on text
    type: Literal["function_call", "function_call_output"] | None = None
    name: str | None = Field(None, description="the function called")
    arguments: str | None = Field(None, description="the call's arguments (JSON text)")
    call_id: str | None = None


class ConversationSummary(Schema):
    id: str
    title: str = Field(..., examples=["How do I boil an egg?"], description="the first thing asked")
    owner: str = Field(
        ...,
        examples=["t-3f2a9c0d1e4b5a6f7c8d9e0f"],
        description="whose: anonymous, or a key's or token's hash",
    )
    created_at: str
    updated_at: str
    message_count: int
    model: str
    total_tokens: int
    last_message: str
    dropped_messages: int


class ConversationListOut(Schema):
    status: str = "success"
    total_conversations: int
    total: int
    limit: int
    offset: int
    conversations: list[ConversationSummary]


class ConversationDetail(Schema):
    id: str
    title: str = Field(..., examples=["How do I boil an egg?"])
    owner: str = Field(..., examples=["anonymous"])
    created_at: str
    updated_at: str
    messages: list[MessageOut]
    model: str
    total_tokens: int
    message_count: int
    dropped_messages: int


class ConversationOut(Schema):
    status: str = "success"
    conversation: ConversationDetail


class DeletedOut(Schema):
    status: str = "success"
    message: str
    remaining_conversations: int


class OwnerQuery(Schema):
    owner: str | None = Field(
        None,
        pattern=r"^(anonymous|[kt]-[0-9a-f]{24})$",
        description="Admins only: act on this owner's conversation (the `owner` of a listed summary).",
    )


class Page(Schema):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000_000)


class UsageByModel(Schema):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int


class UsageOut(Schema):
    """Upstream calls since the store began counting (across workers with Redis)."""

    requests: int = Field(..., examples=[42])
    errors: int = Field(..., examples=[1])
    error_rate: float = Field(..., examples=[0.0238])
    total_tokens: int = Field(..., examples=[12345])
    by_model: dict[str, UsageByModel]
    errors_by_kind: dict[str, int] = Field(..., examples=[{"upstream_timeout": 1}])
    evictions: int = Field(..., examples=[0])


def summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "title": conversation.display_title,
        "owner": conversation.owner,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "message_count": conversation.message_count,
        "model": conversation.model,
        "total_tokens": conversation.total_tokens,
        "last_message": conversation.last_message[:PREVIEW_CHARS],
        "dropped_messages": conversation.dropped_messages,
    }


def conversation_list(total: int, page: list[Conversation], paging: Page) -> dict[str, Any]:
    """The body of every conversation-list operation."""
    return {
        "status": "success",
        "total_conversations": total,
        "total": total,
        "limit": paging.limit,
        "offset": paging.offset,
        "conversations": [summary(c) for c in page],
    }


def conversation_detail(conversation: Conversation) -> dict[str, Any]:
    detail = summary(conversation)
    del detail["last_message"]
    detail["messages"] = conversation.messages
    return {"status": "success", "conversation": detail}


def deleted(conversation_id: str, remaining: int) -> dict[str, Any]:
    return {
        "status": "success",
        "message": f"Deleted conversation {conversation_id}",
        "remaining_conversations": remaining,
    }


class ReadyOut(Schema):
    ready: bool
    message: str = Field(..., examples=["Ready to serve."])
    api_available: bool = Field(..., description="An upstream key is set, or the upstream needs none.")
    store: str = Field(..., examples=["local-memory"])


def ready_answer(readiness: Readiness) -> Status[dict[str, Any]]:
    """The readiness answer (/ready and /api/hf/ready): 200 when ready, else 503."""
    return Status(200 if readiness.ready else 503, dict(readiness.__dict__))
