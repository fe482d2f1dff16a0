"""Guards on the owner's key and memory, checked before any upstream call or stored turn: who the client
is, rate limits, token budgets, models, spend."""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest

import upstream
from core import metrics, telemetry
from core.auth import bearer_token, identify, matching_key
from core.errors import BadRequest, ServiceError
from stores import Kind, get_store
from stores.base import Admission, Count

KEY_SHAPE = re.compile(r"[\x21-\x7e]{1,512}")  # printable ASCII: what an HTTP header can carry
MAX_ADDRESS_CHARS = 64  # the longest IPv6 text with a zone is well under this

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"


def _ip(text: str) -> IPAddress | None:
    """One well-formed IP address, or None (a header entry is never trusted to be short)."""
    text = text.strip()
    if not text or len(text) > MAX_ADDRESS_CHARS:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_client(request: HttpRequest) -> IPAddress | None:
    """With TRUSTED_PROXY_HOPS = N: the entry N places from the right of X-Forwarded-For, counting the
    peer as the last hop. Each proxy appends the address it saw, so whatever a client writes itself
    stays further left and is never read. Fewer entries than proxies: None."""
    hops = settings.TRUSTED_PROXY_HOPS
    if not hops:
        return None
    # At most hops + 1 pieces, however long the header: the first holds everything further left.
    entries = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", hops)
    return _ip(entries[-hops]) if len(entries) >= hops else None


def client_address(request: HttpRequest) -> str:
    """The client's address: from X-Forwarded-For behind trusted proxies, else the socket peer. An IPv6
    client counts as its /64 (one subscriber's usual share), an IPv4-mapped one as its IPv4 address."""
    address = _forwarded_client(request) or _ip(request.META.get("REMOTE_ADDR", ""))
    if address is None:  # a Unix socket's peer, say: such clients share one identity
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


def client_request_id(request: HttpRequest) -> str | None:
    """The X-Request-ID the client sent, when this request is known by it (else None: one was made)."""
    sent = request.headers.get("X-Request-ID")
    return sent if sent and telemetry.SAFE_REQUEST_ID.fullmatch(sent) else None


def _digest(text: str) -> str:
    """A store key part made from client input: always 32 characters, whatever the input."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def client_identity(request: HttpRequest) -> str:
    """Who is counted (rate limit, storage quota, token budget): the access or admin key when there is
    one, else the client address. Only digests: no address or key is kept in a store key. Worked out
    once a request (the rate limit, the budget and the storage quota all ask)."""
    known: str | None = getattr(request, "_client_identity", None)
    if known is not None:
        return known
    identity = _client_identity(request)
    request._client_identity = identity  # type: ignore[attr-defined]
    return identity


def _client_identity(request: HttpRequest) -> str:
    try:
        caller = identify(request)  # also for operations open to all (auth=None)
    except ServiceError:  # a malformed client token: counted by its address
        caller = None
    if caller is not None and caller.keyed:
        return "key:" + caller.owner  # the key's fingerprint
    return "ip:" + _digest(client_address(request))


def _rate_count(request: HttpRequest) -> Count | None:
    """This request's hit on its client's rate limit (None: RATE_LIMIT is off)."""
    limit, window = settings.RATE_LIMIT
    return Count(f"rate:{client_identity(request)}", 1, window) if limit else None


def _check_rate_count(count: int, reset: int) -> None:
    """Over the limit raises 429 with Retry-After."""
    limit, window = settings.RATE_LIMIT
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


async def check_rate(request: HttpRequest) -> None:
    """Count this request against its client's window; over the limit raises 429 with Retry-After."""
    await admit(request, None, budgeted=False)


async def admit(
    request: HttpRequest,
    client_key: str | None,
    *,
    budgeted: bool = True,
    conversation: tuple[Kind, str, str] | None = None,
    records: tuple[Kind, list[str], str] | None = None,
) -> Admission:
    """Every guard a request passes before its upstream call, with what it reads from the store, in
    one store round trip: the rate limit counts it (429 rate_limited over it), then, when `budgeted`,
    the token budgets its call is charged to (429 budget_exceeded while one is spent; only calls on
    the server's key count, see _budgets_charged), and the conversation (kind, id, owner) and records
    (kind, ids, owner) it continues."""
    rate = _rate_count(request)
    budgets = _budgets_charged(request, client_key) if budgeted else []
    counts = ([rate] if rate else []) + [Count(b.key, 0, b.window) for b in budgets]
    if not counts and conversation is None and records is None:
        return Admission([])
    admission = await get_store().admit(counts, conversation=conversation, records=records)
    totals = list(admission.counts)
    if rate:
        _check_rate_count(*totals.pop(0))
    for budget, (used, reset) in zip(budgets, totals, strict=True):
        _check_budget_use(budget, used, reset)
    return admission


class BudgetExceeded(ServiceError):
    status = 429
    code = "budget_exceeded"


@dataclass(frozen=True)
class Budget:
    """A token budget: `limit` tokens per fixed window of `window` seconds, counted under `key`."""

    scope: str  # "total" (the whole service) or "client"
    key: str
    limit: int
    window: int


PERIOD_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}

# Whose budgets this request's upstream tokens are charged to: set by admit before the call,
# read by charge() when the upstream reports its usage. A stream reports it at its end, which Django's
# ASGI handler sends from the task that ran the view, so the value is still there. None: nobody.
_charged: ContextVar[str | None] = ContextVar("charged", default=None)


def budgets_of(identity: str) -> list[Budget]:
    """The budgets in force (CLIENT_TOKEN_BUDGET, TOTAL_TOKEN_BUDGET) for one client."""
    budgets = []
    for scope, (limit, window), key in (
        ("total", settings.TOTAL_TOKEN_BUDGET, "budget:total"),
        ("client", settings.CLIENT_TOKEN_BUDGET, f"budget:client:{identity}"),
    ):
        if limit:
            budgets.append(Budget(scope, key, limit, window))
    return budgets


def _budgets_charged(request: HttpRequest, client_key: str | None) -> list[Budget]:
    """The budgets this request's upstream call is charged to, remembered for charges(). Only calls on
    the server's key are counted: a request that brings its own upstream key (`client_key`) spends
    nothing of the owner's."""
    identity = None if (client_key or "").strip() else client_identity(request)
    _charged.set(identity)
    return [] if identity is None else budgets_of(identity)


def _check_budget_use(budget: Budget, used: int, reset: int) -> None:
    if used >= budget.limit:
        metrics.BUDGET_EXCEEDED.labels(budget.scope).inc()
        whose = "This service's" if budget.scope == "total" else "Your"
        period = PERIOD_NAMES.get(budget.window, f"{budget.window} seconds")
        raise BudgetExceeded(
            f"{whose} token budget ({budget.limit} per {period}) is spent; try again in {reset} seconds.",
            headers={"Retry-After": str(reset)},
        )


def charges(tokens: int) -> tuple[Count, ...]:
    """An upstream call's tokens as counts against the budgets admit() found for this
    request (none when nobody is charged)."""
    identity = _charged.get()
    if identity is None or tokens <= 0:
        return ()
    return tuple(Count(b.key, tokens, b.window) for b in budgets_of(identity))


async def budget_use(request: HttpRequest) -> dict[str, dict[str, int] | None]:
    """The figures of each budget for /chat/health: the whole service's and the caller's (None: off)."""
    use: dict[str, dict[str, int] | None] = {"total": None, "client": None}
    for budget in budgets_of(client_identity(request)):
        used, reset = await get_store().tally(budget.key, 0, budget.window)
        use[budget.scope] = {"used": used, "limit": budget.limit, "resets_in": reset}
    return use


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
