"""Access keys (BACKEND_API_KEYS) as Ninja auth classes, so /docs shows them and Authorize works."""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.security import APIKeyHeader, HttpBearer

OPEN = "open"  # request.auth when no access keys are configured


def matching_key(candidate: str) -> str | None:
    """The configured access key equal to `candidate`, compared in constant time."""
    found = None
    for key in settings.BACKEND_API_KEYS:
        if hmac.compare_digest(candidate.encode(), key.encode()):
            found = key
    return found


def bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class AccessKeyBearer(HttpBearer):
    """`Authorization: Bearer <access key>`."""

    async def __call__(self, request: HttpRequest) -> Any:
        if not settings.BACKEND_API_KEYS:
            return OPEN
        return matching_key(bearer_token(request))

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return matching_key(token)


class AccessKeyHeader(APIKeyHeader):
    """`X-API-Key: <access key>`."""

    param_name = "X-API-Key"

    async def __call__(self, request: HttpRequest) -> Any:
        if not settings.BACKEND_API_KEYS:
            return OPEN
        return matching_key(request.headers.get(self.param_name, ""))

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return matching_key(key or "")


ACCESS = [AccessKeyBearer(), AccessKeyHeader()]
