"""Guards on the owner's key, checked before any upstream call: which key, rate limits, models, spend."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest

import upstream
from core import metrics
from core.auth import Caller
from core.errors import BadRequest, ServiceError
from stores import get_store

KEY_SHAPE = re.compile(r"[\x21-\x7e]{1,512}")  # printable ASCII: what an HTTP header can carry


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"


def client_identity(request: HttpRequest) -> str:
    """The access key when there is one, else the client address (X-Forwarded-For only if trusted)."""
    caller = getattr(request, "auth", None)
    if isinstance(caller, Caller) and caller.keyed:
        return "key:" + caller.owner
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


class ApiKeyRequired(ServiceError):
    status = 401
    code = "api_key_required"

    def __init__(self) -> None:
        super().__init__(
            "An API key is required: set LLM_API_KEY on the server or send api_key in the request."
        )


def resolve_key(request_key: str | None) -> str:
    """The client's key if it sent one (and they are allowed), else the server's."""
    request_key = (request_key or "").strip()
    if request_key and not settings.ALLOW_CLIENT_API_KEY:
        raise BadRequest(
            "This server does not accept api_key in requests.", code="client_api_key_not_allowed"
        )
    if request_key and not KEY_SHAPE.fullmatch(request_key):
        raise BadRequest("That API key has characters no key can have.", code="invalid_api_key")
    key = request_key or settings.LLM_API_KEY
    if not key and upstream.key_required():
        raise ApiKeyRequired()
    return key


def resolve_max_tokens(requested: int | None) -> int:
    if requested is None:
        return settings.LLM_MAX_TOKENS
    if requested > settings.LLM_MAX_TOKENS_LIMIT:
        raise BadRequest(
            f"max_tokens may be at most {settings.LLM_MAX_TOKENS_LIMIT}.", code="max_tokens_too_large"
        )
    return requested
