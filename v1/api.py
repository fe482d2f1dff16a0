"""/v1/*: an OpenAI-compatible face, so any OpenAI client can use this gateway. Stateless."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Router
from ninja.responses import Status

import upstream
from core.auth import bearer_token, matching_key
from core.errors import OPENAI_ERRORS, ServiceError, openai_error_body
from core.jsonio import dumps
from gateway import calls, catalog, guards, sse
from v1.schemas import ChatCompletionOut, CompletionsIn, ModelList

logger = logging.getLogger(__name__)

router = Router(tags=["openai-compatible"])

HANDLED_FIELDS = {"model", "messages", "stream", "temperature", "max_tokens", "max_completion_tokens"}


def client_upstream_key(request: HttpRequest) -> str | None:
    """The client's own upstream key (its Bearer token) when the server has none: bring your own key.

    A Bearer token that is one of our access keys only authenticates: it never goes upstream.
    """
    if settings.LLM_API_KEY:
        return None
    token = bearer_token(request)
    return None if matching_key(token) else token


@router.post(
    "/chat/completions",
    response={200: ChatCompletionOut, **OPENAI_ERRORS},
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
    await guards.check_rate(request)
    client_key = client_upstream_key(request)
    await guards.check_budget(request, client_key)
    key = guards.resolve_key(client_key)
    max_tokens = guards.resolve_max_tokens(payload.max_completion_tokens or payload.max_tokens)
    model = payload.model or settings.LLM_MODEL
    guards.check_model(model)
    messages = [m.model_dump(exclude_none=True) for m in payload.messages]
    extra = {k: v for k, v in payload.model_dump(exclude_none=True).items() if k not in HANDLED_FIELDS}
    guards.check_passthrough(extra)
    call = calls.upstream_call(
        messages,
        model=model,
        max_tokens=max_tokens,
        temperature=payload.temperature,
        api_key=key,
        extra=extra,
    )
    if payload.stream:
        return sse.event_stream(_openai_frames(await calls.open_and_record(call)))
    completion, _ = await calls.complete_and_record(call)
    body = dict(completion.raw)
    body.setdefault("object", "chat.completion")
    body["model"] = completion.model
    return Status(200, body)


async def _openai_frames(stream: upstream.UpstreamStream) -> AsyncIterator[bytes]:
    try:
        async for chunk in calls.relay(stream):
            yield sse.frame(None, dumps(chunk))
    except ServiceError as exc:
        yield sse.frame(None, openai_error_body(exc.status, exc.code, exc.message))
        return
    yield sse.frame(None, b"[DONE]")


@router.get("/models", response=ModelList, summary="OpenAI-compatible model list")
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
