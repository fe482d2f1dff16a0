"""Guards on the owner's key: per-client rate limits and the model allow-list."""

from __future__ import annotations

import fnmatch
import hashlib

from django.conf import settings
from django.http import HttpRequest

from chat.store import get_store
from config import metrics
from config.errors import BadRequest, ServiceError
from config.security import OPEN


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"


def client_identity(request: HttpRequest) -> str:
    """The access key when there is one, else the client address (X-Forwarded-For only if trusted)."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, str) and auth != OPEN:
        return "key:" + hashlib.sha256(auth.encode()).hexdigest()[:32]
    address = request.META.get("REMOTE_ADDR", "") or "unknown"
    if settings.TRUST_PROXY_HEADERS:
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
        address = forwarded or address
    return "ip:" + address


async def check_rate(request: HttpRequest) -> None:
    """Count this request against its client's window; over the limit raises 429 with Retry-After."""
    limit, window = settings.RATE_LIMIT
    if not limit:
        return
    count, reset = await get_store().hit(f"rate:{client_identity(request)}", window)
    if count > limit:
        metrics.RATE_LIMITED.inc()
        raise RateLimited(
            f"Too many requests: the limit is {limit} per {window} seconds; try again in {reset} seconds.",
            headers={
                "Retry-After": str(reset),
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(reset),
                "RateLimit-Policy": f"{limit};w={window}",
            },
        )


def check_model(model: str) -> None:
    """ALLOWED_MODELS (shell-style patterns, `*` = any) decides before any upstream call."""
    if not any(fnmatch.fnmatchcase(model, pattern) for pattern in settings.ALLOWED_MODELS):
        raise BadRequest(f"The model {model} is not allowed on this server.", code="model_not_allowed")
