"""/v1/conversations/*: OpenAI's Conversations API. An OpenAI conversation is a /chat conversation:
the same id, owner and messages, so the chat page and the Responses API continue each other's
conversations (gateway.openai_conversations)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router
from ninja.responses import Status

from core.auth import caller_of, owner_for_writing
from core.clock import utc_now_iso
from core.errors import OpenAIErrorOut
from gateway import guards, items, openai_conversations
from v1.response_schemas import (
    ConversationCreateIn,
    ConversationDeletedOut,
    ConversationObjectOut,
    ConversationUpdateIn,
    ItemListOut,
    ItemOut,
    ItemsCreateIn,
    ItemsQuery,
)

router = Router(tags=["conversations"])

ERRORS = {
    400: OpenAIErrorOut,
    401: OpenAIErrorOut,
    404: OpenAIErrorOut,
    429: OpenAIErrorOut,
    503: OpenAIErrorOut,
}


def _stored(given: list[Any] | None) -> list[dict[str, Any]]:
    dumped = [item.model_dump(exclude_none=True) for item in given or []]
    return items.stored_from_input(dumped, now=utc_now_iso(), param="items")


@router.post(
    "", response={200: ConversationObjectOut, **ERRORS}, summary="Create a conversation (Conversations API)"
)
async def create_conversation(request: HttpRequest, payload: ConversationCreateIn) -> Status[dict[str, Any]]:
    """A new conversation, with up to 20 first items and metadata; `responses.create(conversation=...)`
    and the chat page continue it."""
    await guards.check_rate(request)
    owner = owner_for_writing(request)
    created = await openai_conversations.create(
        owner, _stored(payload.items), payload.metadata or {}, quota_key=guards.client_identity(request)
    )
    return Status(200, created)


@router.get(
    "/{conversation_id}",
    response={200: ConversationObjectOut, **ERRORS},
    summary="A conversation (Conversations API)",
)
async def retrieve_conversation(request: HttpRequest, conversation_id: str) -> Status[dict[str, Any]]:
    """One of the caller's conversations (any of them: the chat page's too)."""
    return Status(200, await openai_conversations.retrieve(caller_of(request).owner, conversation_id))


@router.post(
    "/{conversation_id}",
    response={200: ConversationObjectOut, **ERRORS},
    summary="Update a conversation's metadata (Conversations API)",
)
async def update_conversation(
    request: HttpRequest, conversation_id: str, payload: ConversationUpdateIn
) -> Status[dict[str, Any]]:
    """Replace the conversation's metadata."""
    await guards.check_rate(request)
    owner = owner_for_writing(request)
    updated = await openai_conversations.update(
        owner, conversation_id, payload.metadata or {}, quota_key=guards.client_identity(request)
    )
    return Status(200, updated)


@router.delete(
    "/{conversation_id}",
    response={200: ConversationDeletedOut, **ERRORS},
    summary="Delete a conversation (Conversations API)",
)
async def delete_conversation(request: HttpRequest, conversation_id: str) -> Status[dict[str, Any]]:
    """Delete the conversation and its items (responses made in it stay until deleted or expired)."""
    return Status(200, await openai_conversations.delete(caller_of(request).owner, conversation_id))


@router.get(
    "/{conversation_id}/items",
    response={200: ItemListOut, **ERRORS},
    summary="A conversation's items (Conversations API)",
)
async def list_items(
    request: HttpRequest, conversation_id: str, page: Query[ItemsQuery]
) -> Status[dict[str, Any]]:
    """The conversation's items, newest first unless `order=asc`, `limit` a page (1-100, 20)."""
    listed = await openai_conversations.list_items(
        caller_of(request).owner, conversation_id, after=page.after, limit=page.limit, order=page.order
    )
    return Status(200, listed)


@router.post(
    "/{conversation_id}/items",
    response={200: ItemListOut, **ERRORS},
    summary="Add items to a conversation (Conversations API)",
)
async def create_items(
    request: HttpRequest, conversation_id: str, payload: ItemsCreateIn
) -> Status[dict[str, Any]]:
    """Append up to 20 items as they are (no model is called); the items added."""
    await guards.check_rate(request)
    owner = owner_for_writing(request)
    added = await openai_conversations.add_items(
        owner, conversation_id, _stored(payload.items), quota_key=guards.client_identity(request)
    )
    return Status(200, added)


ITEM_EXAMPLE = {
    "id": "msg_6f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
    "type": "message",
    "role": "user",
    "status": "completed",
    "content": [{"type": "input_text", "text": "Hello!"}],
}


@router.get(
    "/{conversation_id}/items/{item_id}",
    response={200: ItemOut, **ERRORS},
    summary="One item of a conversation (Conversations API)",
    openapi_extra={"responses": {200: {"content": {"application/json": {"example": ITEM_EXAMPLE}}}}},
)
async def retrieve_item(request: HttpRequest, conversation_id: str, item_id: str) -> Status[dict[str, Any]]:
    """One item of the conversation."""
    found = await openai_conversations.retrieve_item(caller_of(request).owner, conversation_id, item_id)
    return Status(200, found)


@router.delete(
    "/{conversation_id}/items/{item_id}",
    response={200: ConversationObjectOut, **ERRORS},
    summary="Delete an item of a conversation (Conversations API)",
)
async def delete_item(request: HttpRequest, conversation_id: str, item_id: str) -> Status[dict[str, Any]]:
    """Remove one item; answers the conversation."""
    owner = caller_of(request).owner
    return Status(200, await openai_conversations.delete_item(owner, conversation_id, item_id))
