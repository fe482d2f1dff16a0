"""The last middleware: the 413 for a body the edge stopped reading, the project's error shape where
Django wrote its own 405, and the route name for the access line and metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

from config.edge import TOO_LARGE
from core import telemetry
from core.errors import error_response

Handler = Callable[[HttpRequest], HttpResponse]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def too_large(request: HttpRequest) -> HttpResponse | None:
    if not getattr(request, "scope", {}).get(TOO_LARGE):
        return None
    limit = settings.MAX_REQUEST_BYTES
    return error_response(
        413, "request_too_large", f"The request body is larger than {limit} bytes.", path=request.path
    )


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
            return too_large(request) or finish(request, await get_response(request))

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        return too_large(request) or finish(request, cast(HttpResponse, get_response(request)))

    return middleware
