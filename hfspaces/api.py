"""/api/hf/*: diagnostics for a HuggingFace Space (status, settings, logs, a test conversation)."""

from __future__ import annotations

import logging
import platform
import sys
from typing import Any

import django
import ninja
from django.conf import settings
from django.http import HttpRequest
from ninja import Query, Router
from ninja.responses import Status

from core import logbuffer
from core.auth import caller_of, require_admin
from core.clock import uptime_seconds, utc_now_iso
from core.errors import ErrorOut, NotFound
from gateway import conversations, status, turns
from gateway.schemas import ReadyOut, ready_answer
from hfspaces.schemas import (
    DebugOut,
    EnvironmentOut,
    HfTestIn,
    HfTestOut,
    LogQuery,
    LogsOut,
    StatusOut,
    public_settings,
)
from stores import Kind, get_store, snapshot

router = Router(tags=["huggingface-spaces"])


def require_debug_endpoints(request: HttpRequest) -> None:
    """DEBUG_ENDPOINTS=false hides the diagnostic endpoints as if they did not exist; once any access
    or admin key is configured they are for admin keys only."""
    if not settings.DEBUG_ENDPOINTS:
        raise NotFound("No endpoint at this path; see GET / for the list.")
    require_admin(request)


@router.get("/status", response=StatusOut, summary="Spaces status, settings and usage")
async def hf_status(request: HttpRequest) -> dict[str, Any]:
    """Running state, the non-secret settings, the store's snapshot and usage figures."""
    return {
        "status": "running",
        "environment": "huggingface-spaces",
        **public_settings(),
        "store": get_store().kind_name,
        "active_conversations": {
            "chat": await conversations.count_or_none(Kind.CHAT),
            "memory_chat": await conversations.count_or_none(Kind.MEMORY),
        },
        "snapshot": snapshot.status(),
        "usage": await conversations.usage_or_none(),
        "timestamp": utc_now_iso(),
    }


@router.api_operation(
    ["GET", "HEAD"], "/ready", response={200: ReadyOut, 503: ReadyOut}, summary="Readiness check", auth=None
)
async def hf_ready(request: HttpRequest) -> Status[dict[str, Any]]:
    """200 when the conversation store answers, else 503 (the same as GET /ready)."""
    return ready_answer(await status.readiness())


@router.get(
    "/environment",
    response={200: EnvironmentOut, 403: ErrorOut, 404: ErrorOut},
    summary="Settings (secrets only as set/missing)",
)
async def hf_environment(request: HttpRequest) -> Status[dict[str, Any]]:
    """The service's settings; secrets show only whether they are set."""
    require_debug_endpoints(request)
    return Status(200, {"environment_variables": public_settings()})


@router.get("/debug", response={200: DebugOut, 403: ErrorOut, 404: ErrorOut}, summary="Debug information")
async def hf_debug(request: HttpRequest) -> Status[dict[str, Any]]:
    """Versions, platform, store and uptime."""
    require_debug_endpoints(request)
    return Status(
        200,
        {
            "system": {
                "platform": platform.platform(),
                "python_version": sys.version.split()[0],
                "django_version": django.get_version(),
                "ninja_version": ninja.__version__,
            },
            "store": get_store().kind_name,
            "uptime_seconds": uptime_seconds(),
            "environment": public_settings(),
        },
    )


@router.get(
    "/logs",
    response={200: LogsOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="Recent log records",
)
async def hf_logs(request: HttpRequest, query: Query[LogQuery]) -> Status[dict[str, Any]]:
    """This process's latest log records, newest last; an admin sees client addresses, owners and
    conversation ids, anyone else records with those hidden."""
    require_debug_endpoints(request)
    records = logbuffer.recent(
        limit=query.limit,
        min_level=logging.getLevelName(query.level.upper()),
        private=caller_of(request).admin,
    )
    return Status(200, {"status": "success", "total": len(records), "logs": records})


@router.post("/test-conversation", response={200: HfTestOut, 422: ErrorOut}, summary="HF test conversation")
async def hf_test_conversation(
    request: HttpRequest, payload: HfTestIn | None = None
) -> Status[dict[str, Any]]:
    """Checks request handling end to end without the upstream."""
    message = payload.message if payload else "HF Spaces test"
    return Status(
        200,
        {
            "status": "success",
            "conversation_id": turns.new_conversation_id(),
            "message": message,
            "test": True,
        },
    )
