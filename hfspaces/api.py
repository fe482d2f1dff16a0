"""GET /, /health, /api/hf/*, /api/simple/*, /api/options/config: deployment and diagnostics."""

from __future__ import annotations

import logging
import platform
import sys
import time
from typing import Any

import django
import ninja
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from ninja import Field, Query, Router, Schema
from ninja.responses import Status

from chat import services, upstream
from chat.schemas import MessageIn
from chat.services import new_conversation_id
from chat.store import get_store
from config import logbuffer, metrics
from config.clock import utc_now_iso
from config.errors import ErrorOut, NotFound, ServiceError

logger = logging.getLogger(__name__)
STARTED = time.monotonic()

root_router = Router(tags=["service"])
hf_router = Router(tags=["huggingface-spaces"])
simple_router = Router(tags=["simple"])
options_router = Router(tags=["options"])

SECRET_SETTINGS = ("LLM_API_KEY",)
PLAIN_SETTINGS = (
    "LLM_MODEL",
    "LLM_BASE_URL",
    "LLM_TEMPERATURE",
    "LLM_MAX_TOKENS",
    "LLM_MAX_TOKENS_LIMIT",
    "LLM_TIMEOUT",
    "LLM_HTTP_REFERER",
    "LLM_APP_TITLE",
    "CHAT_HISTORY_MESSAGES",
    "CHAT_CONTEXT_TOKENS",
    "CONVERSATION_TTL",
    "CONVERSATION_MAX",
    "CONVERSATION_MAX_MESSAGES",
    "MESSAGE_MAX_CHARS",
    "LOG_LEVEL",
    "PORT",
    "DEBUG",
)


def public_settings() -> dict[str, Any]:
    """Named settings: plain values for non-secrets, only set/missing for secrets."""
    values: dict[str, Any] = {name: getattr(settings, name) for name in PLAIN_SETTINGS}
    values["CORS_ALLOWED_ORIGINS"] = ",".join(settings.CORS_ORIGINS)
    values["CHAT_SYSTEM_PROMPT"] = "set" if settings.CHAT_SYSTEM_PROMPT else "empty"
    for name in SECRET_SETTINGS:
        values[name] = "set" if getattr(settings, name) else "missing"
    return values


def endpoint_index() -> dict[str, str]:
    """Every operation of the API, "METHOD /path": summary, read from the OpenAPI schema."""
    from config.api import api

    index: dict[str, str] = {}
    for path, operations in api.get_openapi_schema()["paths"].items():
        for method, operation in operations.items():
            index[f"{method.upper()} {path}"] = operation.get("summary", "")
    index["GET /docs"] = "Interactive API documentation"
    index["GET /openapi.json"] = "OpenAPI specification"
    index["GET /ui"] = "Chat page for people"
    return index


_index_cache: dict[str, str] = {}


def require_debug_endpoints(request: HttpRequest) -> None:
    """DEBUG_ENDPOINTS=false hides the diagnostic endpoints as if they did not exist."""
    if not settings.DEBUG_ENDPOINTS:
        raise NotFound("No endpoint at this path; see GET / for the list.")


def prefers_html(request: HttpRequest) -> bool:
    """True when the Accept header ranks text/html above application/json (browsers, not curl or */*)."""
    return request.get_preferred_type(["application/json", "text/html"]) == "text/html"


@root_router.get("/", response=dict[str, Any], summary="API index with every endpoint", auth=None)
async def root(request: HttpRequest, response: HttpResponse) -> dict[str, Any] | HttpResponse:
    """Name, version and every endpoint of this service; browsers are sent to the chat page /ui."""
    response["Vary"] = "Accept"
    if prefers_html(request):
        redirect = HttpResponseRedirect("/ui")
        redirect["Vary"] = "Accept"
        return redirect
    if not _index_cache:
        _index_cache.update(endpoint_index())
    return {
        "name": "LLM Chat Gateway",
        "version": settings.VERSION,
        "description": "Chat with LLMs on OpenRouter or any OpenAI-compatible upstream, with memory.",
        "status": "running",
        "endpoints": _index_cache,
        "documentation": "/docs",
        "openapi": "/openapi.json",
    }


@root_router.api_operation(
    ["GET", "HEAD"], "/health", response=dict[str, Any], summary="Main health check", auth=None
)
async def health(request: HttpRequest) -> dict[str, Any]:
    """Liveness: the process answers. No upstream call."""
    return {
        "status": "healthy",
        "service": "llm-chat-gateway",
        "version": settings.VERSION,
        "uptime_seconds": round(time.monotonic() - STARTED, 1),
        "timestamp": utc_now_iso(),
    }


@root_router.get(
    "/metrics",
    summary="Prometheus metrics",
    response={200: str, 404: ErrorOut},
    openapi_extra={
        "responses": {
            200: {
                "description": "Prometheus text format",
                "content": {
                    "text/plain": {
                        "example": "# HELP gateway_http_requests_total HTTP requests answered.\n"
                        "# TYPE gateway_http_requests_total counter\n"
                        'gateway_http_requests_total{method="POST",route="/chat/message",status="200"} 42.0\n'
                    }
                },
            }
        }
    },
)
async def metrics_text(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; see the README for what each metric means."""
    if not settings.METRICS_ENABLED:
        raise NotFound("No endpoint at this path; see GET / for the list.")
    conversations = {kind: await services.count_or_none(kind) for kind in ("chat", "memory", "test")}
    body = metrics.render(await services.usage_or_none(), conversations)
    return HttpResponse(body, content_type=metrics.CONTENT_TYPE)


@hf_router.get("/status", response=dict[str, Any], summary="Spaces status, settings and usage")
async def hf_status(request: HttpRequest) -> dict[str, Any]:
    """Running state, the non-secret settings and usage figures."""
    store = get_store()
    return {
        "status": "running",
        "environment": "huggingface-spaces",
        **public_settings(),
        "store": store.kind_name,
        "active_conversations": {
            "chat": await services.count_or_none("chat"),
            "memory_chat": await services.count_or_none("memory"),
        },
        "usage": await services.usage_or_none(),
        "timestamp": utc_now_iso(),
    }


class ReadyOut(Schema):
    ready: bool
    message: str
    api_available: bool
    store: str


@hf_router.api_operation(
    ["GET", "HEAD"], "/ready", response={200: ReadyOut, 503: ReadyOut}, summary="Readiness check", auth=None
)
async def hf_ready(request: HttpRequest) -> Status[dict[str, Any]]:
    """200 when the conversation store answers, else 503."""
    store = get_store()
    api_available = bool(settings.LLM_API_KEY) or not upstream.key_required()
    try:
        await store.ping()
    except ServiceError:
        return Status(
            503,
            {
                "ready": False,
                "message": "The conversation store is not answering.",
                "api_available": api_available,
                "store": store.kind_name,
            },
        )
    return Status(
        200,
        {
            "ready": True,
            "message": "Ready to serve.",
            "api_available": api_available,
            "store": store.kind_name,
        },
    )


@hf_router.get("/environment", response=dict[str, Any], summary="Settings (secrets only as set/missing)")
async def hf_environment(request: HttpRequest) -> dict[str, Any]:
    """The service's settings; secrets show only whether they are set."""
    require_debug_endpoints(request)
    return {"environment_variables": public_settings()}


@hf_router.get("/debug", response=dict[str, Any], summary="Debug information")
async def hf_debug(request: HttpRequest) -> dict[str, Any]:
    """Versions, platform, store and uptime."""
    require_debug_endpoints(request)
    return {
        "system": {
            "platform": platform.platform(),
            "python_version": sys.version.split()[0],
            "django_version": django.get_version(),
            "ninja_version": ninja.__version__,
        },
        "store": get_store().kind_name,
        "uptime_seconds": round(time.monotonic() - STARTED, 1),
        "environment": public_settings(),
    }


class LogQuery(Schema):
    limit: int = Field(100, ge=1, le=logbuffer.BUFFER_SIZE)
    level: str = Field("DEBUG", pattern=r"^(?i:debug|info|warning|error|critical)$")


@hf_router.get("/logs", response={200: dict[str, Any], 422: ErrorOut}, summary="Recent log records")
async def hf_logs(request: HttpRequest, query: Query[LogQuery]) -> Status[dict[str, Any]]:
    """This process's latest log records, newest last."""
    require_debug_endpoints(request)
    records = logbuffer.recent(limit=query.limit, min_level=logging.getLevelName(query.level.upper()))
    return Status(200, {"status": "success", "total": len(records), "logs": records})


class HfTestIn(Schema):
    message: str = Field("HF Spaces test", min_length=1, max_length=settings.MESSAGE_MAX_CHARS)


@hf_router.post(
    "/test-conversation", response={200: dict[str, Any], 422: ErrorOut}, summary="HF test conversation"
)
async def hf_test_conversation(
    request: HttpRequest, payload: HfTestIn | None = None
) -> Status[dict[str, Any]]:
    """Checks request handling end to end without the upstream."""
    message = payload.message if payload else "HF Spaces test"
    return Status(
        200,
        {"status": "success", "conversation_id": new_conversation_id(), "message": message, "test": True},
    )


@simple_router.get("/health", response=dict[str, Any], summary="Simple health check", auth=None)
async def simple_health(request: HttpRequest) -> dict[str, Any]:
    """Liveness; no upstream call."""
    return {
        "status": "healthy",
        "service": "simple-conversation",
        "message": "Simple conversation API is running",
    }


class SimpleOut(Schema):
    conversation_id: str
    status: str = "success"
    message: str
    response: str
    user_message: str


@simple_router.post(
    "/conversation", response={200: SimpleOut, 422: ErrorOut}, summary="Simple conversation test"
)
async def simple_conversation(request: HttpRequest, payload: MessageIn) -> Status[dict[str, Any]]:
    """Echo a message; nothing is stored."""
    return Status(
        200,
        {
            "conversation_id": payload.conversation_id or new_conversation_id(),
            "status": "success",
            "message": "Conversation created successfully",
            "response": f"Echo: {payload.message}",
            "user_message": payload.message,
        },
    )


@options_router.get("/config", response=dict[str, Any], summary="Front-end configuration")
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
