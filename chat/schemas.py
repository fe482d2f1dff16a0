from __future__ import annotations

from django.conf import settings
from ninja import Field, Schema
from pydantic import field_validator

CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$"


def _not_blank(value: str) -> str:
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

    _message_not_blank = field_validator("message")(_not_blank)


class ChatIn(MessageIn):
    model: str | None = Field(None, pattern=MODEL_PATTERN, examples=["openai/gpt-4o-mini"])
    api_key: str | None = Field(
        None, max_length=512, description="Upstream key for this request; defaults to the server's."
    )
    stream: bool = Field(False, description="Answer as server-sent events.")
    max_tokens: int | None = Field(None, ge=1, examples=[1000])
    temperature: float | None = Field(None, ge=0.0, le=2.0, examples=[0.7])


class OpenRouterTestIn(Schema):
    message: str = Field(
        "Test OpenRouter", min_length=1, max_length=settings.MESSAGE_MAX_CHARS, examples=["Test OpenRouter"]
    )
    model: str | None = Field(None, pattern=MODEL_PATTERN, examples=["openai/gpt-4o-mini"])
    api_key: str | None = Field(None, max_length=512)

    _message_not_blank = field_validator("message")(_not_blank)


class Usage(Schema):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatOut(Schema):
    conversation_id: str
    response: str
    model: str
    timestamp: str
    usage: Usage
    status: str = "success"
    message_count: int
    total_tokens: int


class MessageOut(Schema):
    role: str
    content: str
    timestamp: str
    model: str | None = None


class ConversationSummary(Schema):
    id: str
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


class ModelInfo(Schema):
    id: str
    name: str
    description: str = ""
    recommended: bool = False
    context_length: int | None = None


class ModelsOut(Schema):
    status: str = "success"
    source: str = Field(..., description="upstream, stale (last good copy) or builtin")
    models: list[ModelInfo]


class ModelIdsOut(Schema):
    status: str = "success"
    source: str
    total_models: int
    models: list[str]
    timestamp: str


class OpenRouterTestOut(Schema):
    status: str = "success"
    request_message: str
    response_message: str
    model_used: str
    timestamp: str
    usage: Usage
    openrouter_response: dict[str, str | None]


class Page(Schema):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000_000)
