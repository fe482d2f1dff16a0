"""The one NinjaAPI: every router, and every error mapped to an HTTP answer in one place."""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from chat.api import openrouter_router
from chat.api import router as chat_router
from chat.compat import v1_router
from config.errors import ServiceError, error_response
from config.jsonio import ORJSONParser, ORJSONRenderer
from config.security import ACCESS
from hfspaces.api import hf_router, options_router, root_router, simple_router
from memory_chat.api import router as memory_router
from memory_chat.api import test_chat_router

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="LLM Chat Gateway",
    version="1.0.0",
    description=(
        "Chat with models on OpenRouter or any OpenAI-compatible upstream, with conversation "
        "memory. Errors always have the shape {status: 'error', code, message, timestamp}."
    ),
    renderer=ORJSONRenderer(),
    parser=ORJSONParser(),
    auth=ACCESS,
)

api.add_router("/", root_router)
api.add_router("/chat/", chat_router)
api.add_router("/openrouter/", openrouter_router)
api.add_router("/memory-chat/", memory_router)
api.add_router("/test-chat/", test_chat_router)
api.add_router("/api/hf/", hf_router)
api.add_router("/api/simple/", simple_router)
api.add_router("/api/options/", options_router)
api.add_router("/v1/", v1_router)


def _field_name(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "payload", "header")]
    return ".".join(parts) or "body"


@api.exception_handler(ServiceError)
def on_service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers, path=request.path)


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # Reasons come from the validator's message only: the input itself is never echoed.
    errors = [{"field": _field_name(e.get("loc", ())), "reason": e.get("msg", "invalid")} for e in exc.errors]
    return error_response(
        422, "validation_error", "The request is not valid; see errors.", path=request.path, errors=errors
    )


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        401,
        "unauthorized",
        "A valid access key is required: send Authorization: Bearer <key> or X-API-Key: <key>.",
        headers={"WWW-Authenticate": 'Bearer realm="llm-gateway"'},
        path=request.path,
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400:
        return error_response(400, "bad_request", "The request body is not valid JSON.", path=request.path)
    return error_response(exc.status_code, "http_error", str(exc), path=request.path)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(404, "not_found", "Not found.", path=request.path)


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.path)
    return error_response(
        500, "internal_error", "The server failed to handle this request.", path=request.path
    )
