"""Who is calling: access keys (BACKEND_API_KEYS), admin keys (ADMIN_API_KEYS) and client tokens, as
Ninja auth classes, so /docs shows each scheme and Authorize works.

A caller's owner identity decides whose conversations it sees. It is, in order: its access or admin
key; else the client token it sends (`X-Client-Token`, which the chat page makes at random and keeps in
the browser); else the one anonymous space. Only a hash of a key or token is ever kept or logged.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.security import APIKeyHeader, HttpBearer

from core import telemetry
from core.errors import BadRequest, ServiceError
from core.keys import access_keys, admin_keys, any_keys, fingerprint

ANONYMOUS = "anonymous"
TOKEN_HEADER = "X-Client-Token"
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,256}")


@dataclass(frozen=True)
class Caller:
    """`owner` names whose conversations these are (non-secret: a hash prefix, or "anonymous");
    `name` is an access key's name for logs and metrics; `admin` may see every owner's conversations."""

    owner: str
    name: str | None = None
    admin: bool = False
    keyed: bool = False  # identified by an access or admin key (rate limits count per key)


def _matching(candidate: str, keys: dict[str, str]) -> str | None:
    """The name of the configured key equal to `candidate`, compared in constant time."""
    found = None
    for key, name in keys.items():
        if hmac.compare_digest(candidate.encode(), key.encode()):
            found = name
    return found


def matching_key(candidate: str) -> str | None:
    """The name of the access or admin key equal to `candidate`."""
    if not candidate:
        return None
    return _matching(candidate, access_keys()) or _matching(candidate, admin_keys())


def bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class ClientTokenRequired(ServiceError):
    status = 401
    code = "client_token_required"

    def __init__(self) -> None:
        super().__init__(
            f"This server keeps no anonymous conversations: send {TOKEN_HEADER} (32 or more random "
            "letters, digits, - or _) or an access key."
        )


def _from_key(request: HttpRequest) -> Caller | None:
    for candidate in (bearer_token(request), request.headers.get("X-API-Key", "").strip()):
        if not candidate:
            continue
        admin = _matching(candidate, admin_keys())
        if admin:
            return Caller(owner=f"k-{fingerprint(candidate)}", name=admin, admin=True, keyed=True)
        name = _matching(candidate, access_keys())
        if name:
            return Caller(owner=f"k-{fingerprint(candidate)}", name=name, keyed=True)
    return None


def identify(request: HttpRequest) -> Caller | None:
    """The caller, or None when access keys are required and none was sent (401)."""
    cached = getattr(request, "_caller", None)
    if cached is not None:
        return cached
    caller = _from_key(request)
    if caller is None:
        if access_keys():
            return None
        token = request.headers.get(TOKEN_HEADER, "").strip()
        if token and not TOKEN_SHAPE.fullmatch(token):
            raise BadRequest(
                f"{TOKEN_HEADER} must be 32 to 256 letters, digits, - or _.", code="invalid_client_token"
            )
        caller = Caller(owner=f"t-{fingerprint(token)}") if token else Caller(owner=ANONYMOUS)
    request._caller = caller  # type: ignore[attr-defined]
    telemetry.note(owner=caller.owner, **({"key": caller.name} if caller.name else {}))
    return caller


def caller_of(request: HttpRequest) -> Caller:
    """The identified caller of an operation (after authentication)."""
    caller = identify(request)
    assert caller is not None  # the operation's auth has already refused the request otherwise
    return caller


def owner_for_writing(request: HttpRequest) -> str:
    """The caller's owner id; with ANONYMOUS_CONVERSATIONS off, storing needs a token or a key."""
    owner = caller_of(request).owner
    if owner == ANONYMOUS and not settings.ANONYMOUS_CONVERSATIONS:
        raise ClientTokenRequired()
    return owner


class AdminOnly(ServiceError):
    status = 403
    code = "admin_only"

    def __init__(self) -> None:
        super().__init__("Only an admin key (ADMIN_API_KEYS) may use this endpoint on this server.")


def require_admin(request: HttpRequest) -> None:
    """Diagnostics are open while no key is configured; once any is, they are for admin keys only."""
    if any_keys() and not (identify(request) or Caller(ANONYMOUS)).admin:
        raise AdminOnly()


class AccessKeyBearer(HttpBearer):
    """`Authorization: Bearer <access key>`."""

    async def __call__(self, request: HttpRequest) -> Any:
        return identify(request)

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return identify(request)


class AccessKeyHeader(APIKeyHeader):
    """`X-API-Key: <access key>`."""

    param_name = "X-API-Key"

    async def __call__(self, request: HttpRequest) -> Any:
        return identify(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return identify(request)


class ClientToken(APIKeyHeader):
    """`X-Client-Token: <32+ random letters, digits, - or _>`: whose conversations, when no access keys
    are configured. Make one at random, keep it, send it with every call; it is never stored, only
    its hash."""

    param_name = TOKEN_HEADER

    async def __call__(self, request: HttpRequest) -> Any:
        return identify(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return identify(request)


ACCESS = [AccessKeyBearer(), AccessKeyHeader(), ClientToken()]
