"""The one NinjaAPI: every router, and every error mapped to an HTTP answer in one place."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

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

EXAMPLES_FILE = Path(__file__).with_name("openapi_examples.json")


@functools.cache
def recorded_examples() -> dict[str, Any]:
    """Answers recorded from a running service (tidied by hand), keyed "METHOD /path"."""
    return json.loads(EXAMPLES_FILE.read_text())


class GatewayAPI(NinjaAPI):
    """The NinjaAPI, with a recorded answer as the example of each operation in /openapi.json."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        examples = recorded_examples()
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                example = examples.get(f"{method.upper()} {path}")
                ok = operation.get("responses", {}).get(200)
                if example is not None and ok is not None:
                    content = ok.setdefault("content", {}).setdefault("application/json", {})
                    content["example"] = example
        return schema


api = GatewayAPI(
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
