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

import orjson
from django.conf import settings
from django.http import HttpRequest

import upstream
from core import lifetime, metrics, telemetry
from core.auth import bearer_token, identify, matching_key
from core.errors import BadRequest, ServiceError
from stores import Kind, get_store
from stores.base import Admission, Count, fixed_window

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
    output_cap: int = 0,
    budgeted: bool = True,
    conversation: tuple[Kind, str, str] | None = None,
    records: tuple[Kind, list[str], str] | None = None,
    turn: tuple[str, str] | None = None,
) -> Admission:
    """Every guard a request passes before its upstream call, with what it reads from the store, in
    one store round trip: the rate limit counts it (429 rate_limited over it), then, when `budgeted`,
    the token budgets its call is charged to (only calls on the server's key count, see
    _budgets_charged) hold what it may spend: its body's estimate and `output_cap`, the most its answer
    may take (429 budget_exceeded when that is more than a budget has left), and the conversation
    (kind, id, owner) and records (kind, ids, owner) it continues, and whether a turn id (owner, id)
    was stored already. See Reservation."""
    rate = _rate_count(request)
    budgets = _budgets_charged(request, client_key) if budgeted else []
    amount = len(request.body) // CHARS_PER_TOKEN + output_cap if budgets else 0
    held = [Count(b.key, amount, b.window, cap=b.limit, slot=fixed_window(b.window)[0]) for b in budgets]
    counts = ([rate] if rate else []) + held
    if not counts and conversation is None and records is None and turn is None:
        return Admission([])
    admission = await get_store().admit(counts, conversation=conversation, records=records, turn=turn)
    totals = list(admission.counts)
    if rate:
        try:
            _check_rate_count(*totals.pop(0))
        except RateLimited:
            await _release(held, totals, amount)
            raise
    if budgets:
        await _hold(budgets, held, totals, amount)
        reservation = Reservation(_charged.get() or "", amount, {c.key: c.slot or 0 for c in held})
        _reserved.set(reservation)
        lifetime.close_at_end(reservation.release_unused)
    return admission


CHARS_PER_TOKEN = 4  # the estimate everywhere (CHAT_CONTEXT_TOKENS too): roughly four characters a token


@dataclass
class Reservation:
    """What a request's upstream call may spend, held in its token budgets from its admission on, so
    that calls running at once cannot together spend past a budget: each holds its share first. The
    call's real usage settles it (charges): the difference is charged or given back. A call whose
    usage never comes (its client left, or the upstream sent none) is charged what was held; a call
    refused by the upstream, or a request that never made its call, is charged nothing."""

    identity: str
    tokens: int  # held and not settled yet
    slots: dict[str, int]  # each budget's window, to settle in
    called: bool = False  # the upstream call was made

    def counts(self, amount: int, *, cap: bool = False) -> list[Count]:
        return [
            Count(b.key, amount, b.window, cap=b.limit if cap else 0, slot=self.slots[b.key])
            for b in budgets_of(self.identity)
        ]

    async def release_unused(self) -> None:
        """At the request's end: what a request that made no upstream call holds goes back."""
        if self.tokens and not self.called:
            amount, self.tokens = self.tokens, 0
            await get_store().settle(self.counts(-amount))


_reserved: ContextVar[Reservation | None] = ContextVar("reserved", default=None)


async def _hold(budgets: list[Budget], held: list[Count], totals: list[tuple[int, int]], amount: int) -> None:
    """429 budget_exceeded when a budget could not hold `amount` (what the others held goes back)."""
    for budget, (total, reset) in zip(budgets, totals, strict=True):
        if total > budget.limit:
            await _release(held, totals, amount)
            _refuse(budget, total - amount, reset, amount)


async def _release(held: list[Count], totals: list[tuple[int, int]], amount: int) -> None:
    """Give back what these counts added (those a cap refused added nothing)."""
    back = [
        Count(c.key, -amount, c.window, slot=c.slot)
        for c, (total, _) in zip(held, totals, strict=True)
        if not (c.cap and total > c.cap)
    ]
    if back:
        await get_store().settle(back)


# How far a call's estimate may pass what its admission held before it holds more (a round trip): the
# estimates differ by a message's JSON around its text; the settlement charges the real usage anyway.
TOP_UP_SLACK = 32


async def hold_for(call: upstream.UpstreamCall) -> None:
    """Just before an upstream call: its budgets hold its whole estimate (the prompt as it will be sent,
    history and all, and its output cap); more than admission held (by TOP_UP_SLACK) costs one more
    store round trip, and 429 budget_exceeded when a budget cannot hold it."""
    reservation = _reserved.get()
    if reservation is None:
        return
    reservation.called = True
    extra = prompt_estimate(call) + output_cap_of(call) - reservation.tokens
    if extra <= TOP_UP_SLACK or not reservation.tokens:
        return
    held = reservation.counts(extra, cap=True)
    totals = list((await get_store().admit(held)).counts)
    try:
        await _hold(budgets_of(reservation.identity), held, totals, extra)
    except BudgetExceeded:
        reservation.called = False
        await reservation.release_unused()
        raise
    reservation.tokens += extra


def tokens_of(text: str) -> int:
    """A text's tokens as a prompt's, roughly (its JSON string, four characters a token)."""
    return (len(text) + 32) // CHARS_PER_TOKEN  # with its message's JSON around it


def prompt_estimate(call: upstream.UpstreamCall) -> int:
    """The prompt's tokens, roughly: its messages' JSON, four characters a token (never less)."""
    return len(orjson.dumps(call.messages)) // CHARS_PER_TOKEN


def output_cap_of(call: upstream.UpstreamCall) -> int:
    """The most the call's answer may take: its max_tokens, else the client's own caps (a forwarded
    body; the larger, as an upstream may honour either), else as requested_cap."""
    if call.max_tokens is not None:
        return call.max_tokens
    caps = [call.extra.get(name) for name in ("max_completion_tokens", "max_tokens")]
    return requested_cap(*(c for c in caps if isinstance(c, int) and not isinstance(c, bool)))


def requested_cap(*caps: int | None) -> int:
    """What a request's budgets hold for its answer: the largest output cap it sends, else
    LLM_MAX_TOKENS, which is then sent as its cap (a provider's default may be its model's whole
    output window)."""
    return max((c for c in caps if c is not None and c > 0), default=settings.LLM_MAX_TOKENS)


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


def _refuse(budget: Budget, used: int, reset: int, wanted: int) -> None:
    """429 budget_exceeded: the budget is spent, or has less left than a request needs."""
    metrics.BUDGET_EXCEEDED.labels(budget.scope).inc()
    whose = "This service's" if budget.scope == "total" else "Your"
    period = PERIOD_NAMES.get(budget.window, f"{budget.window} seconds")
    headers = {"Retry-After": str(reset)}
    if wanted > budget.limit:  # no window will ever hold it: waiting cannot help
        message = (
            f"This request may use about {wanted} tokens (its prompt and the longest answer it allows), more "
            f"than {whose.lower()} whole token budget ({budget.limit} per {period}); send less, or a smaller "
            "max_tokens."
        )
        headers = {}
    elif used < budget.limit:
        message = (
            f"This request may use about {wanted} tokens (its prompt and the longest answer it allows), more "
            f"than the {budget.limit - used} left of {whose.lower()} token budget ({budget.limit} per "
            f"{period}); send less, or try again in {reset} seconds."
        )
    else:
        message = f"{whose} token budget ({budget.limit} per {period}) is spent; try again in {reset} seconds"
        message += "."
    raise BudgetExceeded(message, headers=headers)


def charges(tokens: int, *, refund: bool = False) -> tuple[Count, ...]:
    """An upstream call's usage against the budgets admit() found for this request (none when nobody is
    charged): with a Reservation, the difference from what it holds (`tokens` 0, the usage unknown,
    leaves what it holds charged; `refund`, a call the upstream refused, gives it all back), once."""
    identity = _charged.get()
    if identity is None:
        return ()
    reservation = _reserved.get()
    if reservation is None or not reservation.tokens:
        return tuple(Count(b.key, tokens, b.window) for b in budgets_of(identity)) if tokens > 0 else ()
    held, reservation.tokens = reservation.tokens, 0
    amount = -held if refund else (tokens - held if tokens > 0 else 0)
    return tuple(reservation.counts(amount)) if amount else ()


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
    token caps under either name, and the spending extras; and stream_options, which the service
    completes (it asks for a stream's usage)."""
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("stream_options must be an object.", code="invalid_type", param="stream_options")
    fallbacks = body.get("models")
    if fallbacks is not None:
        if not isinstance(fallbacks, list) or not all(isinstance(m, str) for m in fallbacks):
            raise BadRequest("models must be a list of model names.", code="bad_request", param="models")
        for model in fallbacks:
            check_model(model)
    if body.get("n") not in (None, 1):
        raise BadRequest("Only one choice per request (n=1) is supported.", code="n_not_supported", param="n")
    budget = _reasoning_max_tokens(body)
    if budget is not None and (
        not isinstance(budget, int) or isinstance(budget, bool) or budget > settings.LLM_MAX_TOKENS_LIMIT
    ):
        raise BadRequest(
            f"reasoning.max_tokens may be at most {settings.LLM_MAX_TOKENS_LIMIT}.",
            code="max_tokens_too_large",
            param="reasoning.max_tokens",
        )
    for name in ("max_tokens", "max_completion_tokens"):
        check_max_tokens(body.get(name), param=name)
    check_spending_extras(body)


def _reasoning_max_tokens(body: dict[str, Any]) -> Any:
    reasoning = body.get("reasoning")
    return reasoning.get("max_tokens") if isinstance(reasoning, dict) else None


def reasoning_budget(body: dict[str, Any]) -> int:
    """OpenRouter's `reasoning.max_tokens` (checked by check_passthrough), else 0."""
    budget = _reasoning_max_tokens(body)
    return budget if isinstance(budget, int) and budget > 0 else 0


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
    if request_key and matching_key(request_key):  # one of ours: it authenticates, never goes upstream
        raise BadRequest(
            "api_key is this server's access key, not a key of the model provider: it is never sent "
            "upstream.",
            code="invalid_api_key",
            param="api_key",
        )
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
