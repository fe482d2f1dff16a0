from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path

from config.api import api
from core.errors import error_response
from webui.views import chat_page, favicon


def not_found(request: HttpRequest, exception: Exception | None = None, **kwargs: object) -> HttpResponse:
    return error_response(
        404, "not_found", "No endpoint at this path; see GET / for the list.", path=request.path
    )


def server_error(request: HttpRequest) -> HttpResponse:
    return error_response(500, "internal_error", "The server failed to handle this request.")


urlpatterns = [
    path("ui", chat_page, name="ui"),
    path("favicon.ico", favicon, name="favicon"),
    path("", api.urls),
    re_path(r"^.*$", not_found),
]

handler404 = not_found
handler500 = server_error
