"""Shapes of /api/hf/*."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict

from core import logbuffer
from gateway.schemas import UsageOut


class PublicSettings(Schema):
    """The service's settings: plain values for non-secrets, only set/missing for secrets."""

    LLM_MODEL: str = Field(..., examples=["openai/gpt-4o-mini"])
    LLM_BASE_URL: str = Field(..., examples=["https://openrouter.ai/api/v1"])
    LLM_TEMPERATURE: float = Field(..., examples=[0.7])
    LLM_MAX_TOKENS: int = Field(..., examples=[1000])
    LLM_MAX_TOKENS_LIMIT: int = Field(..., examples=[4096])
    LLM_TIMEOUT: float = Field(..., examples=[60.0])
    LLM_HTTP_REFERER: str
    LLM_APP_TITLE: str
    CHAT_HISTORY_MESSAGES: int = Field(..., examples=[10])
    CHAT_CONTEXT_TOKENS: int = Field(..., examples=[0])
    CONVERSATION_TTL: int = Field(..., examples=[86400])
    CONVERSATION_MAX: int = Field(..., examples=[1000])
    CONVERSATION_MAX_MESSAGES: int = Field(..., examples=[200])
    MESSAGE_MAX_CHARS: int = Field(..., examples=[32000])
    LOG_LEVEL: str = Field(..., examples=["INFO"])
    PORT: int = Field(..., examples=[7860])
    DEBUG: bool
    CORS_ALLOWED_ORIGINS: str = Field(..., examples=["*"])
    CHAT_SYSTEM_PROMPT: str = Field(..., examples=["set"], description="set or empty")
    LLM_API_KEY: str = Field(..., examples=["set"], description="set or missing; never the key")


class ActiveConversations(Schema):
    chat: int | None
    memory_chat: int | None


class SnapshotOut(Schema):
    """The local store's snapshot file (STORE_SNAPSHOT_PATH); `enabled` is false when it is not set,
    or when REDIS_URL is (Redis then keeps conversations itself)."""

    enabled: bool = Field(..., examples=[True])
    path: str | None = Field(..., examples=["/data/conversations.snapshot"])
    interval_seconds: float | None = Field(..., examples=[30.0])
    last_write_at: str | None = Field(
        ..., examples=["2026-11-25T20:25:51.042902+00:00"], description="the last successful save"
    )
    last_write_bytes: int | None = Field(..., examples=[734003], description="its size")
    last_error: str | None = Field(
        ..., examples=[None], description="why the last save failed; null once a save succeeds"
    )
    restored_conversations: int | None = Field(
        ..., examples=[412], description="conversations loaded at start-up"
    )
    set_aside_to: str | None = Field(
        ...,
        examples=[None],
        description="where an unreadable snapshot found at start-up was moved (the service started empty)",
    )


class StatusOut(PublicSettings):
    status: str = Field(..., examples=["running"])
    environment: str = Field(..., examples=["huggingface-spaces"])
    store: str = Field(..., examples=["local-memory"])
    active_conversations: ActiveConversations
    snapshot: SnapshotOut
    usage: UsageOut | None
    timestamp: str


class EnvironmentOut(Schema):
    environment_variables: PublicSettings


class SystemInfo(Schema):
    platform: str
    python_version: str = Field(..., examples=["3.12.1"])
    django_version: str = Field(..., examples=["5.2.19"])
    ninja_version: str = Field(..., examples=["1.7.1"])


class DebugOut(Schema):
    system: SystemInfo
    store: str = Field(..., examples=["local-memory"])
    uptime_seconds: float
    environment: PublicSettings


class LogRecordOut(BaseModel):
    """One log record; structured extras (an access line's fields) follow the basics."""

    model_config = ConfigDict(extra="allow")

    timestamp: str
    level: str = Field(..., examples=["INFO"])
    logger: str = Field(..., examples=["gateway.access"])
    message: str
    request_id: str | None = None


class LogsOut(Schema):
    status: str = "success"
    total: int
    logs: list[LogRecordOut]


class LogQuery(Schema):
    limit: int = Field(100, ge=1, le=logbuffer.BUFFER_SIZE)
    level: str = Field("DEBUG", pattern=r"^(?i:debug|info|warning|error|critical)$")


class HfTestIn(Schema):
    message: str = Field("HF Spaces test", min_length=1, max_length=settings.MESSAGE_MAX_CHARS)


class HfTestOut(Schema):
    status: str = "success"
    conversation_id: str
    message: str
    test: bool = True


def public_settings() -> dict[str, Any]:
    """The values of PublicSettings, read from the settings now."""
    plain = (name for name in PublicSettings.model_fields if name not in _SHOWN_AS_SET)
    values: dict[str, Any] = {name: getattr(settings, name) for name in plain}
    values["CORS_ALLOWED_ORIGINS"] = ",".join(settings.CORS_ORIGINS)
    values["CHAT_SYSTEM_PROMPT"] = "set" if settings.CHAT_SYSTEM_PROMPT else "empty"
    values["LLM_API_KEY"] = "set" if settings.LLM_API_KEY else "missing"
    return values


_SHOWN_AS_SET = {"CORS_ALLOWED_ORIGINS", "CHAT_SYSTEM_PROMPT", "LLM_API_KEY"}
