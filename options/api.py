"""/api/options/*: configuration a front end reads at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Router, Schema

router = Router(tags=["options"])


class FeatureFlags(Schema):
    ENABLE_BILLING: bool = False
    HIDE_LLM_SETTINGS: bool = False


class FrontEndConfigOut(Schema):
    APP_MODE: str = Field(..., examples=["oss"])
    GITHUB_CLIENT_ID: str
    POSTHOG_CLIENT_KEY: str
    FEATURE_FLAGS: FeatureFlags
    DEFAULT_MODEL: str = Field(..., examples=["openai/gpt-4o-mini"])
    LLM_BASE_URL: str = Field(..., examples=["https://openrouter.ai/api/v1"])
    MAX_TOKENS_LIMIT: int = Field(..., examples=[4096])
    MESSAGE_MAX_CHARS: int = Field(..., examples=[32000])
    API_KEY_CONFIGURED: bool


@router.get("/config", response=FrontEndConfigOut, summary="Front-end configuration")
async def options_config(request: HttpRequest) -> dict[str, Any]:
    """The OpenHands front end's keys plus this service's non-secret settings."""
    return {
        "APP_MODE": "oss",
        "GITHUB_CLIENT_ID": settings.GITHUB_CLIENT_ID,
        "POSTHOG_CLIENT_KEY": settings.POSTHOG_CLIENT_KEY,
        "FEATURE_FLAGS": {"ENABLE_BILLING": False, "HIDE_LLM_SETTINGS": False},
        "DEFAULT_MODEL": settings.LLM_MODEL,
        "LLM_BASE_URL": settings.LLM_BASE_URL,
        "MAX_TOKENS_LIMIT": settings.LLM_MAX_TOKENS_LIMIT,
        "MESSAGE_MAX_CHARS": settings.MESSAGE_MAX_CHARS,
        "API_KEY_CONFIGURED": bool(settings.LLM_API_KEY),
    }
