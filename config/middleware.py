"""Gives answers that Django or Ninja produce outside our handlers the project's error shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

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
        return shaped
    return response


@sync_and_async_middleware
def error_shape(get_response: Handler | AsyncHandler) -> Handler | AsyncHandler:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            return _shaped(request, await get_response(request))  # type: ignore[misc]

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        return _shaped(request, get_response(request))  # type: ignore[arg-type]

    return middleware
