"""/openrouter/*: check the connection to the upstream LLM API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Router
from ninja.responses import Status

import upstream
from core.clock import utc_now_iso
from core.errors import ERRORS
from gateway import catalog, guards
from openrouter import services
from openrouter.schemas import (
    ModelIdsOut,
    OpenRouterHealthOut,
    OpenRouterInfoOut,
    OpenRouterTestIn,
    OpenRouterTestOut,
)

router = Router(tags=["openrouter"])


@router.get("/", response=OpenRouterInfoOut, summary="OpenRouter test service info")
async def openrouter_info(request: HttpRequest) -> dict[str, Any]:
    """What the upstream test endpoints are."""
    return {
        "service": "openrouter-test",
        "status": "running",
        "description": "Check the connection to the upstream LLM API.",
        "endpoints": {},
        "default_model": settings.LLM_MODEL,
        "base_url": settings.LLM_BASE_URL,
    }


@router.post("/test", response={200: OpenRouterTestOut, **ERRORS}, summary="Send one test message upstream")
async def openrouter_test(request: HttpRequest, payload: OpenRouterTestIn) -> Status[dict[str, Any]]:
    """One message, no memory: reports what the upstream said."""
    await guards.admit(request, payload.api_key, output_cap=settings.LLM_MAX_TOKENS)
    completion, usage = await services.test_upstream(
        message=payload.message, model=payload.model, api_key=payload.api_key
    )
    return Status(
        200,
        {
            "status": "success",
            "request_message": payload.message,
            "response_message": completion.content,
            "model_used": completion.model,
            "timestamp": utc_now_iso(),
            "usage": usage,
            "openrouter_response": {
                "id": completion.id,
                "model": completion.model,
                "provider": completion.provider,
                "finish_reason": completion.finish_reason,
            },
        },
    )


@router.get("/models", response=ModelIdsOut, summary="Model ids")
async def openrouter_models(request: HttpRequest) -> dict[str, Any]:
    """The ids of the available models."""
    models, source = await catalog.available_models()
    return {
        "status": "success",
        "source": source,
        "total_models": len(models),
        "models": [m["id"] for m in models],
        "timestamp": utc_now_iso(),
    }


@router.get("/health", response=OpenRouterHealthOut, summary="OpenRouter health", auth=None)
async def openrouter_health(request: HttpRequest) -> dict[str, Any]:
    """Configuration check; makes no upstream call and shows no secret."""
    return {
        "status": "healthy",
        "service": "openrouter-test",
        "api_key_configured": bool(settings.LLM_API_KEY),
        "api_key_required": upstream.key_required(),
        "base_url": settings.LLM_BASE_URL,
        "timestamp": utc_now_iso(),
        "environment_vars": {
            "LLM_API_KEY": "set" if settings.LLM_API_KEY else "missing",
            "LLM_MODEL": settings.LLM_MODEL,
            "LLM_BASE_URL": settings.LLM_BASE_URL,
        },
    }
