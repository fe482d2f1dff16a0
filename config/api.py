"""The one NinjaAPI: every router under its prefix, the root index, and every error mapped to an HTTP
answer in one place."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_safe
from ninja import Field, NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema

from chat.api import router as chat_router
from core.auth import ACCESS
from core.errors import OPENAI_PREFIX, ServiceError, error_response
from core.jsonio import BodyRefused, NotJSON, ORJSONParser, ORJSONRenderer
from hfspaces.api import router as hf_router
from memory_chat.api import router as memory_chat_router
from openrouter.api import router as openrouter_router
from ops.api import router as ops_router
from options.api import router as options_router
from simple.api import router as simple_router
from test_chat.api import router as test_chat_router
from v1.api import router as v1_router
from v1.conversations import router as v1_conversations_router
from v1.responses import router as v1_responses_router

logger = logging.getLogger(__name__)


class GatewayAPI(NinjaAPI):
    """The project's NinjaAPI: its OpenAPI schema never changes while the process runs, so it is built
    once (45 to 160 ms) and kept."""

    _schema: OpenAPISchema | None = None

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        if path_prefix is not None or path_params:
            return super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        if self._schema is None:
            self._schema = super().get_openapi_schema()
        return self._schema


def schema_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """Ninja's docs_decorator, for /docs and /openapi.json: GET and HEAD only (405 otherwise), framed
    by this origin alone, and each answer built once per process, then served from memory."""
    built: list[HttpResponse] = []

    @require_safe
    @xframe_options_sameorigin
    async def page(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if not built:
            first = await sync_to_async(view)(request, **kwargs)
            if first.status_code != 200:
                return first
            built.append(first)
        kept = built[0]
        return HttpResponse(kept.content, content_type=kept["Content-Type"])

    return page


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
    docs_decorator=schema_page,
)

ROUTERS = {
    "/": ops_router,
    "/chat/": chat_router,
    "/openrouter/": openrouter_router,
    "/memory-chat/": memory_chat_router,
    "/test-chat/": test_chat_router,
    "/api/hf/": hf_router,
    "/api/simple/": simple_router,
    "/api/options/": options_router,
    "/v1/": v1_router,
    "/v1/responses": v1_responses_router,
    "/v1/conversations": v1_conversations_router,
}
for prefix, router in ROUTERS.items():
    api.add_router(prefix, router)

PAGES = {
    "GET /docs": "Interactive API documentation",
    "GET /openapi.json": "OpenAPI specification",
    "GET /ui": "Chat page for people",
}


class IndexOut(Schema):
    name: str = Field(..., examples=["LLM Chat Gateway"])
    version: str = Field(..., examples=["1.0.0"])
    description: str
    status: str = Field(..., examples=["running"])
    endpoints: dict[str, str] = Field(
        ...,
        description='"METHOD /path": summary, for every operation',
        examples=[{"GET /health": "Main health check"}],
    )
    documentation: str = "/docs"
    openapi: str = "/openapi.json"


@functools.cache
def endpoint_index() -> dict[str, str]:
    """Every operation of this API, "METHOD /path": summary, read from its OpenAPI schema once."""
    index: dict[str, str] = {}
    for path, operations in api.get_openapi_schema()["paths"].items():
        for method, operation in operations.items():
            index[f"{method.upper()} {path}"] = operation.get("summary", "")
    return {**index, **PAGES}


def prefers_html(request: HttpRequest) -> bool:
    """True when the Accept header ranks text/html above application/json (browsers, not curl or */*)."""
    return request.get_preferred_type(["application/json", "text/html"]) == "text/html"


@api.get("/", response=IndexOut, summary="API index with every endpoint", auth=None, tags=["service"])
async def root(request: HttpRequest, response: HttpResponse) -> dict[str, Any] | HttpResponse:
    """Name, version and every endpoint of this service; browsers are sent to the chat page /ui."""
    response["Vary"] = "Accept"
    if prefers_html(request):
        redirect = HttpResponseRedirect("/ui")
        redirect["Vary"] = "Accept"
        return redirect
    return {
        "name": "LLM Chat Gateway",
        "version": settings.VERSION,
        "description": "Chat with LLMs on OpenRouter or any OpenAI-compatible upstream, with memory.",
        "status": "running",
        "endpoints": endpoint_index(),
        "documentation": "/docs",
        "openapi": "/openapi.json",
    }


def _field_name(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "payload", "header")]
    return ".".join(parts) or "body"


def _openai_param(loc: tuple[object, ...] | list[object]) -> str:
    """A field's place as OpenAI names it in `param`: `input[0].content`."""
    name = ""
    for part in loc:
        if part in ("body", "query", "path", "payload", "header"):
            continue
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name or "body"


def _openai_code(kind: str) -> str:
    if kind == "missing":
        return "missing_required_parameter"
    if kind == "extra_forbidden":
        return "unknown_parameter"
    return "invalid_type" if kind.endswith(("_type", "_parsing")) else "invalid_value"


@api.exception_handler(ServiceError)
def on_service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return error_response(
        exc.status,
        exc.code,
        exc.message,
        headers=exc.headers,
        path=request.path,
        param=exc.param,
        provider_error=exc.provider_error,
    )


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # Reasons come from the validator's message only: the input itself is never echoed.
    if request.path.startswith(OPENAI_PREFIX):
        # OpenAI answers a bad parameter with 400 invalid_request_error naming it in `param`, so the
        # SDKs raise BadRequestError; the project's other clients keep their 422 below.
        first = exc.errors[0] if exc.errors else {}
        reasons = "; ".join(
            f"{_openai_param(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors
        )
        return error_response(
            400,
            _openai_code(str(first.get("type", ""))),
            f"Invalid request: {reasons}." if reasons else "Invalid request.",
            path=request.path,
            param=_openai_param(first.get("loc", ())),
        )
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
    # Ninja answers any failure of the parser with HttpError(400) raised `from` it.
    if exc.status_code == 400 and isinstance(exc.__cause__, NotJSON):
        return error_response(
            415,
            "unsupported_media_type",
            "The request body must be JSON, sent with Content-Type: application/json.",
            path=request.path,
        )
    if exc.status_code == 400 and isinstance(exc.__cause__, BodyRefused):
        return error_response(400, "bad_request", str(exc.__cause__), path=request.path)
    if exc.status_code == 400:
        return error_response(400, "bad_request", "The request body is not valid JSON.", path=request.path)
    return error_response(exc.status_code, "http_error", str(exc), path=request.path)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(404, "not_found", "Not found.", path=request.path)


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # The traceback goes to the log (redacted by its filter); the caller gets one plain sentence.
    logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.path, exc_info=exc)
    return error_response(
        500, "internal_error", "The server failed to handle this request.", path=request.path
    )
