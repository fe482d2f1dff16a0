"""Guards on the owner's key: per-client rate limits and the model allow-list."""

from __future__ import annotations

import fnmatch
import hashlib
from typing import Any

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


def check_passthrough(extra: dict[str, Any]) -> None:
    """OpenAI/OpenRouter fields that could spend past the guards: fallback models, n, reasoning budget."""
    fallbacks = extra.get("models")
    if fallbacks is not None:
        if not isinstance(fallbacks, list) or not all(isinstance(m, str) for m in fallbacks):
            raise BadRequest("models must be a list of model names.", code="bad_request")
        for model in fallbacks:
            check_model(model)
    if extra.get("n", 1) != 1:
        raise BadRequest("Only one choice per request (n=1) is supported.", code="n_not_supported")
    reasoning = extra.get("reasoning")
    budget = reasoning.get("max_tokens") if isinstance(reasoning, dict) else None
    if budget is not None and (not isinstance(budget, int) or budget > settings.LLM_MAX_TOKENS_LIMIT):
        raise BadRequest(
            f"reasoning.max_tokens may be at most {settings.LLM_MAX_TOKENS_LIMIT}.",
            code="max_tokens_too_large",
        )


def check_model(model: str) -> None:
    """ALLOWED_MODELS (shell-style patterns, `*` = any) decides before any upstream call."""
    if not any(fnmatch.fnmatchcase(model, pattern) for pattern in settings.ALLOWED_MODELS):
        raise BadRequest(f"The model {model} is not allowed on this server.", code="model_not_allowed")
