"""/v1/*: an OpenAI-compatible face, so any OpenAI client can use this gateway. Stateless."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Router, Schema
from ninja.responses import Status
from pydantic import BaseModel, ConfigDict

from chat import catalog, limits, services, sse, upstream
from chat.schemas import MODEL_PATTERN
from config.errors import OpenAIErrorOut, ServiceError, openai_error_body
from config.jsonio import dumps
from config.security import bearer_token, matching_key

logger = logging.getLogger(__name__)

v1_router = Router(tags=["openai-compatible"])

HANDLED_FIELDS = {"model", "messages", "stream", "temperature", "max_tokens", "max_completion_tokens"}
OPENAI_ERRORS: dict[int, type[Schema]] = {
    code: OpenAIErrorOut for code in (400, 401, 402, 403, 404, 422, 429, 502, 503, 504)
}


class CompletionMessage(BaseModel):
    # pydantic's BaseModel, not ninja's Schema: Schema drops undeclared fields, and OpenAI's
    # other fields (top_p, stop, tools, ...) must reach the upstream.
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class CompletionsIn(BaseModel):
    """OpenAI's Chat Completions request; fields not listed here are passed through upstream."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, pattern=MODEL_PATTERN, examples=["openai/gpt-4o-mini"])
    messages: list[CompletionMessage] = Field(..., min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class ModelCard(Schema):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelList(Schema):
    object: str = "list"
    data: list[ModelCard]


def upstream_key(request: HttpRequest) -> str:
    """The server's key; without one, the client's own Bearer token (bring your own key).

    A Bearer token that is one of our access keys only authenticates: it never goes upstream.
    """
    if settings.LLM_API_KEY:
        return settings.LLM_API_KEY
    token = bearer_token(request)
    return services.resolve_key(None if matching_key(token) else token)


@v1_router.post(
    "/chat/completions",
    response={200: dict[str, Any], **OPENAI_ERRORS},
    summary="OpenAI-compatible chat completion",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "example": {
                        "model": "openai/gpt-4o-mini",
                        "messages": [{"role": "user", "content": "Hi"}],
                    }
                }
            }
        }
    },
)
async def chat_completions(
    request: HttpRequest, payload: CompletionsIn
) -> Status[dict[str, Any]] | StreamingHttpResponse:
    """The OpenAI Chat Completions API, streaming or not, forwarded upstream; nothing is stored."""
    await limits.check_rate(request)
    key = upstream_key(request)
    max_tokens = services.resolve_max_tokens(payload.max_completion_tokens or payload.max_tokens)
    model = payload.model or settings.LLM_MODEL
    limits.check_model(model)
    messages = [m.model_dump(exclude_none=True) for m in payload.messages]
    extra = {k: v for k, v in payload.model_dump(exclude_none=True).items() if k not in HANDLED_FIELDS}
    limits.check_passthrough(extra)
    call = services.upstream_call(
        messages,
        model=model,
        max_tokens=max_tokens,
        temperature=payload.temperature,
        api_key=key,
        extra=extra,
    )
    if payload.stream:
        return sse.event_stream(_openai_frames(await services.open_and_record(call)))
    completion, _ = await services.complete_and_record(call)
    body = dict(completion.raw)
    body.setdefault("object", "chat.completion")
    body["model"] = completion.model
    return Status(200, body)


async def _openai_frames(stream: upstream.UpstreamStream) -> AsyncIterator[bytes]:
    try:
        async for chunk in services.relay(stream):
            yield sse.frame(None, dumps(chunk))
    except ServiceError as exc:
        yield sse.frame(None, openai_error_body(exc.status, exc.code, exc.message))
        return
    yield sse.frame(None, b"[DONE]")


@v1_router.get("/models", response=ModelList, summary="OpenAI-compatible model list")
async def list_models(request: HttpRequest) -> dict[str, Any]:
    """The same cached model list as /chat/models, in OpenAI's list shape."""
    models, _ = await catalog.available_models()
    return {
        "object": "list",
        "data": [
            {
                "id": m["id"],
                "object": "model",
                "created": m.get("created", 0),
                "owned_by": m["id"].split("/")[0],
            }
            for m in models
        ],
    }
