"""Shapes of /openrouter/*."""

from __future__ import annotations

from django.conf import settings
from ninja import Field, Schema
from pydantic import field_validator

from gateway.schemas import MODEL_PATTERN, Usage, not_blank


class OpenRouterTestIn(Schema):
    message: str = Field(
        "Test OpenRouter", min_length=1, max_length=settings.MESSAGE_MAX_CHARS, examples=["Test OpenRouter"]
    )
    model: str | None = Field(None, pattern=MODEL_PATTERN, examples=["openai/gpt-4o-mini"])
    api_key: str | None = Field(None, max_length=512)

    _message_not_blank = field_validator("message")(not_blank)


class OpenRouterTestOut(Schema):
    status: str = "success"
    request_message: str
    response_message: str
    model_used: str
    timestamp: str
    usage: Usage
    openrouter_response: dict[str, str | None]


class ModelIdsOut(Schema):
    status: str = "success"
    source: str
    total_models: int
    models: list[str]
    timestamp: str


class OpenRouterEndpoints(Schema):
    test: str = "POST /openrouter/test"
    models: str = "GET /openrouter/models"
    health: str = "GET /openrouter/health"


class OpenRouterInfoOut(Schema):
    service: str = Field(..., examples=["openrouter-test"])
    status: str = Field(..., examples=["running"])
    description: str
    endpoints: OpenRouterEndpoints
    default_model: str = Field(..., examples=["openai/gpt-4o-mini"])
    base_url: str = Field(..., examples=["https://openrouter.ai/api/v1"])


class UpstreamSettings(Schema):
    LLM_API_KEY: str = Field(..., examples=["set"], description="set or missing; never the key")
    LLM_MODEL: str = Field(..., examples=["openai/gpt-4o-mini"])
    LLM_BASE_URL: str = Field(..., examples=["https://openrouter.ai/api/v1"])


class OpenRouterHealthOut(Schema):
    status: str = Field(..., examples=["healthy"])
    service: str = Field(..., examples=["openrouter-test"])
    api_key_configured: bool
    api_key_required: bool
    base_url: str
    timestamp: str
    environment_vars: UpstreamSettings
