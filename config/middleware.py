"""Finishing touches on every answer: the project's error shape where Django or Ninja wrote their
own, and security headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

from config import telemetry
from config.errors import error_response

Handler = Callable[[HttpRequest], HttpResponse]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


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


def _secured(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    response.setdefault("X-Content-Type-Options", "nosniff")
    response.setdefault("Referrer-Policy", "same-origin")
    if "frame-ancestors" not in response.get("Content-Security-Policy", ""):
        # A page that names who may frame it (the chat page: the Space) keeps that; nothing else is framed.
        response.setdefault("X-Frame-Options", "SAMEORIGIN" if request.path.startswith("/docs") else "DENY")
    return response


def finish(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    match = request.resolver_match
    telemetry.note(route="/" + match.route if match and match.route != "^.*$" else "unmatched")
    return _secured(request, _shaped(request, response))


@sync_and_async_middleware
def finishing(get_response: Handler | AsyncHandler) -> Handler | AsyncHandler:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            return finish(request, await get_response(request))  # type: ignore[misc]

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        return finish(request, get_response(request))  # type: ignore[arg-type]

    return middleware
