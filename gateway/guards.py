"""Guards on the owner's key, checked before any upstream call: which key, rate limits, models, spend."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest

import upstream
from core import metrics
from core.auth import Caller, bearer_token, matching_key
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


def _present(value: Any) -> bool:
    return value is not None and value != [] and value != {}


# OpenRouter fields that spend beyond what ALLOWED_MODELS and LLM_MAX_TOKENS_LIMIT bound (web search
# results are billed per result, a price cap lets dearer providers answer), each with how to find it.
SPENDING_EXTRAS: dict[str, Any] = {
    "plugins": lambda body: _present(body.get("plugins")),
    "web_search_options": lambda body: _present(body.get("web_search_options")),
    "provider.max_price": lambda body: (
        isinstance(body.get("provider"), dict) and _present(body["provider"].get("max_price"))
    ),
}
ONLINE_SUFFIX = ":online"  # OpenRouter's shorthand for the web search plugin


def check_spending_extras(body: dict[str, Any]) -> None:
    """Refuse the spending extras the operator has not allowed (ALLOWED_PASSTHROUGH_EXTRAS)."""
    for name, found in SPENDING_EXTRAS.items():
        if name not in settings.ALLOWED_PASSTHROUGH_EXTRAS and found(body):
            raise BadRequest(
                f"{name} is not allowed on this server: it can spend beyond the server's limits "
                "(the operator can allow it with ALLOWED_PASSTHROUGH_EXTRAS).",
                code="extra_not_allowed",
                param=name,
            )


def check_passthrough(body: dict[str, Any]) -> None:
    """OpenAI/OpenRouter fields that could spend past the guards: fallback models, n, reasoning budget,
    token caps under either name, and the spending extras."""
    fallbacks = body.get("models")
    if fallbacks is not None:
        if not isinstance(fallbacks, list) or not all(isinstance(m, str) for m in fallbacks):
            raise BadRequest("models must be a list of model names.", code="bad_request", param="models")
        for model in fallbacks:
            check_model(model)
    if body.get("n") not in (None, 1):
        raise BadRequest("Only one choice per request (n=1) is supported.", code="n_not_supported", param="n")
    reasoning = body.get("reasoning")
    budget = reasoning.get("max_tokens") if isinstance(reasoning, dict) else None
    if budget is not None and (not isinstance(budget, int) or budget > settings.LLM_MAX_TOKENS_LIMIT):
        raise BadRequest(
            f"reasoning.max_tokens may be at most {settings.LLM_MAX_TOKENS_LIMIT}.",
            code="max_tokens_too_large",
            param="reasoning.max_tokens",
        )
    for name in ("max_tokens", "max_completion_tokens"):
        check_max_tokens(body.get(name), param=name)
    check_spending_extras(body)


def check_model(model: str) -> None:
    """ALLOWED_MODELS (shell-style patterns, `*` = any) decides before any upstream call; the `:online`
    suffix (web search) also needs `plugins` in ALLOWED_PASSTHROUGH_EXTRAS."""
    if not any(fnmatch.fnmatchcase(model, pattern) for pattern in settings.ALLOWED_MODELS):
        raise BadRequest(
            f"The model {model} is not allowed on this server.", code="model_not_allowed", param="model"
        )
    if model.endswith(ONLINE_SUFFIX) and "plugins" not in settings.ALLOWED_PASSTHROUGH_EXTRAS:
        raise BadRequest(
            f"The {ONLINE_SUFFIX} suffix (web search) is not allowed on this server (the operator can "
            "allow it with plugins in ALLOWED_PASSTHROUGH_EXTRAS).",
            code="model_not_allowed",
            param="model",
        )


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


def check_max_tokens(requested: Any, *, param: str = "max_tokens") -> None:
    """A requested output cap (under any of its names) may not exceed LLM_MAX_TOKENS_LIMIT."""
    if isinstance(requested, int | float) and requested > settings.LLM_MAX_TOKENS_LIMIT:
        raise BadRequest(
            f"{param} may be at most {settings.LLM_MAX_TOKENS_LIMIT}.",
            code="max_tokens_too_large",
            param=param,
        )


def resolve_max_tokens(requested: int | None) -> int:
    """The request's max_tokens (checked), or the server's default."""
    if requested is None:
        return settings.LLM_MAX_TOKENS
    check_max_tokens(requested)
    return requested


def openai_client_key(request: HttpRequest) -> str:
    """The upstream key for a /v1 call: the server's; without one, the client's own Bearer token (bring
    your own key). A Bearer token that is one of our access keys only authenticates: it never goes
    upstream."""
    if settings.LLM_API_KEY:
        return settings.LLM_API_KEY
    token = bearer_token(request)
    return resolve_key(None if matching_key(token) else token)
