"""/health, /ready, /metrics: the operational endpoints (liveness, readiness, Prometheus)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Router
from ninja.responses import Status

from core import metrics
from core.auth import require_admin
from core.clock import uptime_seconds, utc_now_iso
from core.errors import ErrorOut, NotFound
from gateway import conversations, status
from gateway.schemas import ReadyOut, ready_answer
from ops.schemas import HealthOut
from stores import Kind

router = Router(tags=["operations"])


@router.api_operation(["GET", "HEAD"], "/health", response=HealthOut, summary="Main health check", auth=None)
async def health(request: HttpRequest) -> dict[str, Any]:
    """Liveness: the process answers. No upstream call."""
    return {
        "status": "healthy",
        "service": "llm-chat-gateway",
        "version": settings.VERSION,
        "uptime_seconds": uptime_seconds(),
        "timestamp": utc_now_iso(),
    }


@router.api_operation(
    ["GET", "HEAD"], "/ready", response={200: ReadyOut, 503: ReadyOut}, summary="Readiness check", auth=None
)
async def ready(request: HttpRequest) -> Status[dict[str, Any]]:
    """200 when the conversation store answers, else 503."""
    return ready_answer(await status.readiness())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response={200: str, 403: ErrorOut, 404: ErrorOut},
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
    require_admin(request)
    # stored responses are records, not conversations: no figure of their own here
    counts = {kind.value: await conversations.count_or_none(kind) for kind in Kind if kind != Kind.RESPONSE}
    body = metrics.render(await conversations.usage_or_none(), counts)
    return HttpResponse(body, content_type=metrics.CONTENT_TYPE)
