"""The project's middleware: Django's own security headers run inline, and the last one (the answer
to a request the edge refused: 413, 408, 400, 431; the project's error shape where Django wrote its own
405; the route name for the access line and metrics)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.decorators import sync_and_async_middleware
from django.utils.deprecation import MiddlewareMixin

from config.edge import REFUSED
from core import telemetry
from core.errors import error_response


class Inline(MiddlewareMixin):
    """Django's MiddlewareMixin runs process_request/process_response of an async chain through
    sync_to_async: a thread hop each, per request. These only set headers, so they run inline here."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.process_request(request) if hasattr(self, "process_request") else None
        if response is None:
            response = await self.get_response(request)  # type: ignore[misc]
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityHeaders(Inline, SecurityMiddleware):
    """nosniff, Referrer-Policy, Cross-Origin-Opener-Policy: Django's SECURE_* settings."""


class FrameOptions(Inline, XFrameOptionsMiddleware):
    """X-Frame-Options from X_FRAME_OPTIONS, unless a view says otherwise (/docs, the chat page)."""


Handler = Callable[[HttpRequest], HttpResponse]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def refused(request: HttpRequest) -> HttpResponse | None:
    """The answer to a request the edge refused before routing."""
    refusal = getattr(request, "scope", {}).get(REFUSED)
    if refusal is None:
        return None
    status, code, message = refusal
    response = error_response(status, code, message, path=request.path)
    if status == 408:
        response["Connection"] = "close"  # the rest of the body may still be on its way
    return response


def _shaped(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if response.status_code == 405 and not response.get("Content-Type", "").startswith("application/json"):
        allowed = response.get("Allow", "")
        shaped = error_response(
            405,
            "method_not_allowed",
            f"This endpoint does not accept that method; use {allowed}.",
            path=request.path,
        )
        shaped["Allow"] = allowed
        response = shaped
    return response


def finish(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    match = request.resolver_match
    telemetry.note(route="/" + match.route if match and match.route != "^.*$" else "unmatched")
    return _shaped(request, response)


@sync_and_async_middleware
def finishing(get_response: Handler | AsyncHandler) -> Handler | AsyncHandler:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            return refused(request) or finish(request, await get_response(request))

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        return refused(request) or finish(request, cast(HttpResponse, get_response(request)))

    return middleware
