"""/v1/chat/completions and /v1/models: an OpenAI-compatible face, so any OpenAI client can use this
gateway. Stateless: a request is forwarded as the client sent it. (/v1/responses and
/v1/conversations, which keep state, have modules of their own.)"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Path as PathParam
from ninja import Router
from ninja.responses import Status

import upstream
from core.errors import OPENAI_ERRORS, NotFound, OpenAIErrorOut, ServiceError, openai_error_body
from gateway import calls, catalog, guards, sse
from v1.schemas import ChatCompletionOut, CompletionsIn, ModelCard, ModelList

logger = logging.getLogger(__name__)

router = Router(tags=["openai-compatible"])
MODEL_EXAMPLE = "openai/gpt-4o-mini"


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
    """The OpenAI Chat Completions API, streaming or not, forwarded upstream as the client sent it
    (only `model` is filled in when missing); nothing is stored."""
    key = guards.openai_client_key(request)
    # The body as it came (field names and nulls kept): the schema above has only checked it. Its caps
    # are checked before anything is held for them.
    body: dict[str, Any] = orjson.loads(request.body)
    guards.check_passthrough(body)
    uncapped = payload.max_tokens is None and payload.max_completion_tokens is None
    if uncapped:  # sent the cap its budgets hold (below), beyond its reasoning budget, which counts
        # within max_tokens (Anthropic refuses a max_tokens not above it)
        cap = guards.reasoning_budget(body) + settings.LLM_MAX_TOKENS
    else:
        cap = guards.requested_cap(payload.max_completion_tokens, payload.max_tokens)
    await guards.admit(request, None if key == settings.LLM_API_KEY else key, output_cap=cap)
    model = payload.model or settings.LLM_MODEL
    guards.check_model(model)
    options = body.get("stream_options") or {}  # an object, or none (check_passthrough)
    asked = options.get("include_usage") is True
    if payload.stream and not asked:  # its usage settles the call's budgets (see guards.Reservation)
        body["stream_options"] = {**options, "include_usage": True}
    if uncapped:  # a provider's default may be its model's whole output window
        body["max_tokens"] = cap
    call = calls.verbatim_call(body, model=model, api_key=key)
    if payload.stream:
        return sse.event_stream(_openai_frames(await calls.open_and_record(call), usage_chunk=asked))
    completion, _ = await calls.complete_and_record(call)
    answer = dict(completion.raw)
    answer.setdefault("object", "chat.completion")
    answer["model"] = completion.model
    return Status(200, answer)


async def _openai_frames(stream: upstream.UpstreamStream, *, usage_chunk: bool) -> AsyncIterator[bytes]:
    """The upstream's chunks as it sent them; the usage-only chunk (no choices) only when the client
    asked for it (stream_options.include_usage), as OpenAI does."""
    try:
        async with calls.relaying(stream):
            async for chunk in stream.chunks():
                if not usage_chunk and not chunk.get("choices") and "usage" in chunk:
                    continue
                yield sse.frame(None, stream.raw)  # as the upstream sent it (checked): no re-encoding
    except ServiceError as exc:
        yield sse.frame(None, openai_error_body(exc.status, exc.code, exc.message))
        return
    yield sse.frame(None, b"[DONE]")


def model_card(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": model["id"],
        "object": "model",
        "created": model.get("created", 0),
        "owned_by": model["id"].split("/")[0],
    }


@router.get("/models", response=ModelList, summary="OpenAI-compatible model list")
async def list_models(request: HttpRequest) -> dict[str, Any]:
    """The same cached model list as /chat/models, in OpenAI's list shape."""
    models, _ = await catalog.available_models()
    return {"object": "list", "data": [model_card(m) for m in models]}


@router.get(
    "/models/{path:model}",
    response={200: ModelCard, 404: OpenAIErrorOut},
    summary="One model of the OpenAI-compatible list",
)
async def retrieve_model(
    request: HttpRequest,
    model: str = PathParam(..., min_length=1, max_length=200, examples=[MODEL_EXAMPLE]),
) -> Status[dict[str, Any]]:
    """One model's card (ids such as `openai/gpt-4o-mini` hold a slash), or 404 in OpenAI's shape."""
    models, _ = await catalog.available_models()
    for found in models:
        if found["id"] == model:
            return Status(200, model_card(found))
    raise NotFound("The model does not exist on this server.", code="model_not_found", param="model")
