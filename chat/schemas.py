"""Shapes of /chat/*."""

from __future__ import annotations

from ninja import Field, Schema

from gateway.schemas import MODEL_PATTERN, MessageIn, Usage, UsageOut


class ChatIn(MessageIn):
    model: str | None = Field(None, pattern=MODEL_PATTERN, examples=["openai/gpt-4o-mini"])
    api_key: str | None = Field(
        None, max_length=512, description="Upstream key for this request; defaults to the server's."
    )
    stream: bool = Field(False, description="Answer as server-sent events.")
    max_tokens: int | None = Field(None, ge=1, examples=[1000])
    temperature: float | None = Field(None, ge=0.0, le=2.0, examples=[0.7])
    replace_last: bool = Field(
        False,
        description="Replace the conversation's last turn instead of adding one: send its last message "
        "again to regenerate the reply, or a new text to edit and resend it. The stored conversation "
        "ends as if the new turn had been the only one (404 if the conversation does not exist).",
    )


class ChatOut(Schema):
    conversation_id: str
    response: str
    model: str
    timestamp: str
    usage: Usage
    status: str = "success"
    message_count: int
    total_tokens: int


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


class ChatEndpoints(Schema):
    send: str = "POST /chat/message"
    models: str = "GET /chat/models"
    conversations: str = "GET /chat/conversations"
    conversation: str = "GET /chat/conversations/{id}"
    delete: str = "DELETE /chat/conversations/{id}"
    health: str = "GET /chat/health"


class ChatInfoOut(Schema):
    service: str = Field(..., examples=["openrouter-chat"])
    status: str = Field(..., examples=["running"])
    description: str
    active_conversations: int | None = Field(..., description="null while the store is not answering")
    supported_models: list[str] = Field(..., examples=[["openai/gpt-4o-mini", "openai/gpt-4o"]])
    default_model: str = Field(..., examples=["openai/gpt-4o-mini"])
    endpoints: ChatEndpoints


class BudgetUseOut(Schema):
    used: int = Field(..., description="tokens counted in the current window", examples=[15250])
    limit: int = Field(..., description="tokens allowed per window", examples=[200000])
    resets_in: int = Field(..., description="seconds until the window starts afresh", examples=[43200])


class BudgetsOut(Schema):
    """Token budgets (CLIENT_TOKEN_BUDGET, TOTAL_TOKEN_BUDGET) for calls on the server's key; null: off."""

    total: BudgetUseOut | None = Field(..., description="the whole service's")
    client: BudgetUseOut | None = Field(..., description="the calling client's")


class ChatHealthOut(Schema):
    status: str = Field(..., examples=["healthy"])
    service: str = Field(..., examples=["openrouter-chat"])
    api_key_configured: bool
    active_conversations: int | None = Field(..., examples=[3])
    openrouter_endpoint: str = Field(..., examples=["https://openrouter.ai/api/v1"])
    usage: UsageOut | None = Field(..., description="null while the store is not answering")
    budgets: BudgetsOut | None = Field(..., description="null while the store is not answering")
    timestamp: str = Field(..., examples=["2026-11-26T12:00:00+00:00"])
