"""POST /chat/*, /openrouter/*: real chat through the upstream, with conversation memory."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router, Schema
from ninja.responses import Status

from chat import catalog, limits, services, sse, upstream
from chat.schemas import (
    ChatIn,
    ChatOut,
    ConversationListOut,
    ConversationOut,
    DeletedOut,
    ModelIdsOut,
    ModelsOut,
    OpenRouterTestIn,
    OpenRouterTestOut,
    Page,
)
from config.clock import utc_now_iso
from config.errors import ErrorOut

router = Router(tags=["chat"])
openrouter_router = Router(tags=["openrouter"])

ERRORS: dict[int, type[Schema]] = {
    code: ErrorOut for code in (400, 401, 402, 403, 404, 422, 429, 502, 503, 504)
}


def api_key_configured() -> bool:
    return bool(settings.LLM_API_KEY)


@router.get("/", response=dict[str, Any], summary="Chat service info")
async def chat_info(request: HttpRequest) -> dict[str, Any]:
    """What the chat service is, its models and endpoints."""
    return {
        "service": "openrouter-chat",
        "status": "running",
        "description": "Chat with models on OpenRouter (or any OpenAI-compatible upstream), with memory.",
        "active_conversations": await services.count_or_none("chat"),
        "supported_models": [m["id"] for m in catalog.BUILTIN_MODELS],
        "default_model": settings.LLM_MODEL,
        "endpoints": {
            "send": "POST /chat/message",
            "models": "GET /chat/models",
            "conversations": "GET /chat/conversations",
            "conversation": "GET /chat/conversations/{id}",
            "delete": "DELETE /chat/conversations/{id}",
            "health": "GET /chat/health",
        },
    }


@router.post(
    "/message",
    response={200: ChatOut, **ERRORS},
    summary="Send a message and get the model's reply",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "example": {"message": "Hello! How can you help me?", "model": "openai/gpt-4o-mini"}
                }
            }
        }
    },
)
async def send_message(
    request: HttpRequest, payload: ChatIn
) -> Status[dict[str, Any]] | StreamingHttpResponse:
    """Send one message; the reply and the message are stored in the conversation.

    With `stream: true` the answer is `text/event-stream`: `delta` events, then one `done` event with
    this operation's usual body (or one `error` event).
    """
    await limits.check_rate(request)
    prepared = await services.prepare_turn(
        message=payload.message,
        conversation_id=payload.conversation_id,
        model=payload.model,
        api_key=payload.api_key,
        max_tokens=payload.max_tokens,
        temperature=payload.temperature,
    )
    if payload.stream:
        return sse.event_stream(await services.chat_stream(prepared, payload.message))
    return Status(200, await services.chat(prepared, payload.message))


@router.get("/models", response=ModelsOut, summary="Available models")
async def chat_models(request: HttpRequest) -> dict[str, Any]:
    """The upstream's models (cached 10 minutes), or the built-in list when it cannot be reached."""
    models, source = await catalog.available_models()
    return {"status": "success", "source": source, "models": models}


@router.get("/health", response=dict[str, Any], summary="Chat health", auth=None)
async def chat_health(request: HttpRequest) -> dict[str, Any]:
    """Liveness and usage figures; makes no upstream call."""
    return {
        "status": "healthy",
        "service": "openrouter-chat",
        "api_key_configured": api_key_configured(),
        "active_conversations": await services.count_or_none("chat"),
        "openrouter_endpoint": settings.LLM_BASE_URL,
        "usage": await services.usage_or_none(),
        "timestamp": utc_now_iso(),
    }


@router.get(
    "/conversations", response={200: ConversationListOut, 422: ErrorOut}, summary="List conversations"
)
async def chat_conversations(request: HttpRequest, page: Query[Page]) -> Status[dict[str, Any]]:
    """Conversations, most recently active first."""
    return Status(200, await services.list_conversations("chat", limit=page.limit, offset=page.offset))


@router.get(
    "/conversations/{conversation_id}",
    response={200: ConversationOut, 404: ErrorOut},
    summary="One conversation with its messages",
)
async def chat_conversation(request: HttpRequest, conversation_id: str) -> Status[dict[str, Any]]:
    """Every stored message of one conversation."""
    return Status(200, await services.conversation_detail("chat", conversation_id))


@router.delete(
    "/conversations/{conversation_id}",
    response={200: DeletedOut, 404: ErrorOut},
    summary="Delete one conversation",
)
async def chat_delete(request: HttpRequest, conversation_id: str) -> Status[dict[str, Any]]:
    """Delete one conversation."""
    return Status(200, await services.delete_conversation("chat", conversation_id))


@openrouter_router.get("/", response=dict[str, Any], summary="OpenRouter test service info")
async def openrouter_info(request: HttpRequest) -> dict[str, Any]:
    """What the upstream test endpoints are."""
    return {
        "service": "openrouter-test",
        "status": "running",
        "description": "Check the connection to the upstream LLM API.",
        "endpoints": {
            "test": "POST /openrouter/test",
            "models": "GET /openrouter/models",
            "health": "GET /openrouter/health",
        },
        "default_model": settings.LLM_MODEL,
        "base_url": settings.LLM_BASE_URL,
    }


@openrouter_router.post(
    "/test", response={200: OpenRouterTestOut, **ERRORS}, summary="Send one test message upstream"
)
async def openrouter_test(request: HttpRequest, payload: OpenRouterTestIn) -> Status[dict[str, Any]]:
    """One message, no memory: reports what the upstream said."""
    await limits.check_rate(request)
    return Status(
        200,
        await services.test_upstream(message=payload.message, model=payload.model, api_key=payload.api_key),
    )


@openrouter_router.get("/models", response=ModelIdsOut, summary="Model ids")
async def openrouter_models(request: HttpRequest) -> dict[str, Any]:
    """The ids of the available models."""
    models, source = await catalog.available_models()
    return {
        "status": "success",
        "source": source,
        "total_models": len(models),
        "models": [m["id"] for m in models],
        "timestamp": utc_now_iso(),
    }


@openrouter_router.get("/health", response=dict[str, Any], summary="OpenRouter health", auth=None)
async def openrouter_health(request: HttpRequest) -> dict[str, Any]:
    """Configuration check; makes no upstream call and shows no secret."""
    return {
        "status": "healthy",
        "service": "openrouter-test",
        "api_key_configured": api_key_configured(),
        "api_key_required": upstream.key_required(),
        "base_url": settings.LLM_BASE_URL,
        "timestamp": utc_now_iso(),
        "environment_vars": {
            "LLM_API_KEY": "set" if settings.LLM_API_KEY else "missing",
            "LLM_MODEL": settings.LLM_MODEL,
            "LLM_BASE_URL": settings.LLM_BASE_URL,
        },
    }
