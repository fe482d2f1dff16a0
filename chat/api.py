"""/chat/*: chat with the upstream's models, with conversation memory."""

from __future__ import annotations

import re
from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import Field, Query, Router
from ninja.responses import Status

from chat.schemas import ChatHealthOut, ChatIn, ChatInfoOut, ChatOut, ModelsOut
from core.auth import caller_of, owner_for_writing
from core.clock import utc_now_iso
from core.errors import ERRORS, ErrorOut
from core.jsonio import dumps
from gateway import catalog, conversations, guards, sse, turns
from gateway.schemas import (
    ConversationListOut,
    ConversationOut,
    DeletedOut,
    OwnerQuery,
    Page,
    conversation_detail,
    conversation_list,
    deleted,
)
from stores import Conversation, Kind

router = Router(tags=["chat"])


class ExportQuery(OwnerQuery):
    format: Literal["markdown", "json"] = Field("markdown", description="markdown or json")


def chat_out(stored: turns.StoredTurn) -> dict[str, Any]:
    """The body of /chat/message (and of the `done` event when streaming)."""
    return {
        "conversation_id": stored.conversation.id,
        "response": stored.reply,
        "model": stored.model,
        "timestamp": utc_now_iso(),
        "usage": stored.usage,
        "status": "success",
        "message_count": stored.conversation.message_count,
        "total_tokens": stored.conversation.total_tokens,
    }


@router.get("/", response=ChatInfoOut, summary="Chat service info")
async def chat_info(request: HttpRequest) -> dict[str, Any]:
    """What the chat service is, its models and endpoints."""
    return {
        "service": "openrouter-chat",
        "status": "running",
        "description": "Chat with models on OpenRouter (or any OpenAI-compatible upstream), with memory.",
        "active_conversations": await conversations.count_or_none(Kind.CHAT),
        "supported_models": [m["id"] for m in catalog.BUILTIN_MODELS],
        "default_model": settings.LLM_MODEL,
        "endpoints": {},
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
    owner = owner_for_writing(request)
    continued = (Kind.CHAT, payload.conversation_id, owner) if payload.conversation_id else None
    # beyond the body: the longest answer it allows and the system prompt
    beyond = guards.resolve_max_tokens(payload.max_tokens) + guards.tokens_of(settings.CHAT_SYSTEM_PROMPT)
    request_id = guards.client_request_id(request)
    retried = None  # a turn its client may be retrying (see turns.turn_id_for)
    if continued and request_id and not payload.replace_last:
        retried = turns.turn_id_for(
            request_id, kind=Kind.CHAT, owner=owner, conversation_id=continued[1], message=payload.message
        )
    admission = await guards.admit(
        request,
        payload.api_key,
        output_cap=beyond,
        conversation=continued,
        turn=(owner, retried) if retried else None,
    )
    if admission.turn_seen and (stored := turns.replayed_turn(admission.conversation, payload.message)):
        if payload.stream:  # answered as stored: no upstream call, nothing written
            return sse.event_stream(turns.replayed_frames(stored, done_body=chat_out))
        return Status(200, chat_out(stored))
    prepared = await turns.prepare_turn(
        owner=owner,
        message=payload.message,
        conversation_id=payload.conversation_id,
        model=payload.model,
        api_key=payload.api_key,
        max_tokens=payload.max_tokens,
        temperature=payload.temperature,
        replace_last=payload.replace_last,
        quota_key=guards.client_identity(request),
        existing=admission.conversation,
        request_id=request_id,
    )
    if payload.stream:
        return sse.event_stream(await turns.chat_stream(prepared, payload.message, done_body=chat_out))
    return Status(200, chat_out(await turns.chat(prepared, payload.message)))


@router.get("/models", response=ModelsOut, summary="Available models")
async def chat_models(request: HttpRequest) -> dict[str, Any]:
    """The upstream's models (cached 10 minutes), or the built-in list when it cannot be reached."""
    models, source = await catalog.available_models()
    return {"status": "success", "source": source, "models": models}


@router.get("/health", response=ChatHealthOut, summary="Chat health", auth=None)
async def chat_health(request: HttpRequest) -> dict[str, Any]:
    """Liveness, usage figures and token budgets (the service's and the caller's); no upstream call."""
    return {
        "status": "healthy",
        "service": "openrouter-chat",
        "api_key_configured": bool(settings.LLM_API_KEY),
        "active_conversations": await conversations.count_or_none(Kind.CHAT),
        "openrouter_endpoint": settings.LLM_BASE_URL,
        "usage": await conversations.usage_or_none(),
        "budgets": await conversations.budgets_or_none(request),
        "timestamp": utc_now_iso(),
    }


@router.get(
    "/conversations", response={200: ConversationListOut, 422: ErrorOut}, summary="List conversations"
)
async def chat_conversations(request: HttpRequest, page: Query[Page]) -> Status[dict[str, Any]]:
    """Conversations, most recently active first."""
    total, found = await conversations.page(
        Kind.CHAT, caller_of(request), limit=page.limit, offset=page.offset
    )
    return Status(200, conversation_list(total, found, page))


@router.get(
    "/conversations/{conversation_id}",
    response={200: ConversationOut, 404: ErrorOut},
    summary="One conversation with its messages",
)
async def chat_conversation(
    request: HttpRequest, conversation_id: str, whose: Query[OwnerQuery]
) -> Status[dict[str, Any]]:
    """Every stored message of one conversation."""
    return Status(
        200,
        conversation_detail(
            await conversations.get(Kind.CHAT, conversation_id, caller_of(request), owner=whose.owner)
        ),
    )


def to_markdown(conversation: Conversation) -> str:
    """A conversation as a Markdown document: its title, then each message under who said it (a
    function call's arguments and a function's result as code blocks)."""
    lines = [f"# {conversation.display_title or conversation.id}", ""]
    for message in conversation.messages:
        kind, when = message.get("type"), message.get("timestamp", "")
        if kind == "function_call":
            head = f"## Function call {message.get('name', '')} ({message.get('call_id', '')}), {when}"
            lines += [head, "", *_code_block(str(message.get("arguments", ""))), ""]
            continue
        if kind == "function_call_output":
            head = f"## Function result ({message.get('call_id', '')}), {when}"
            lines += [head, "", *_code_block(str(message.get("content", ""))), ""]
            continue
        if message.get("role") == "user":
            who = "You"
        else:
            who = f"Assistant ({message['model']})" if message.get("model") else "Assistant"
        lines += [f"## {who}, {when}", "", str(message.get("content", "")), ""]
    return "\n".join(lines)


def _code_block(text: str) -> list[str]:
    """A fenced block that no run of backticks inside the text can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


@router.get(
    "/conversations/{conversation_id}/export",
    response={200: ConversationOut, 404: ErrorOut},
    summary="Export one conversation as Markdown or JSON",
    openapi_extra={
        "responses": {
            200: {
                "description": "A download (Content-Disposition: attachment): JSON, or Markdown text",
                "content": {
                    "text/markdown": {
                        "schema": {"type": "string"},
                        "example": "# Hello\n\n## You, 2026-11-26T12:00:00+00:00\n\nHello\n",
                    },
                },
            }
        }
    },
)
async def chat_export(request: HttpRequest, conversation_id: str, query: Query[ExportQuery]) -> HttpResponse:
    """The whole conversation as a file to keep: `format=markdown` (default) or `format=json` (the same
    body as GET /chat/conversations/{id})."""
    found = await conversations.get(Kind.CHAT, conversation_id, caller_of(request), owner=query.owner)
    if query.format == "json":
        body = ConversationOut.model_validate(conversation_detail(found)).model_dump()
        response = HttpResponse(dumps(body), content_type="application/json")
        extension = "json"
    else:
        response = HttpResponse(to_markdown(found), content_type="text/markdown; charset=utf-8")
        extension = "md"
    response["Content-Disposition"] = f'attachment; filename="conversation-{conversation_id}.{extension}"'
    return response


@router.delete(
    "/conversations/{conversation_id}",
    response={200: DeletedOut, 404: ErrorOut},
    summary="Delete one conversation",
)
async def chat_delete(
    request: HttpRequest, conversation_id: str, whose: Query[OwnerQuery]
) -> Status[dict[str, Any]]:
    """Delete one conversation."""
    remaining = await conversations.delete(Kind.CHAT, conversation_id, caller_of(request), owner=whose.owner)
    return Status(200, deleted(conversation_id, remaining))
