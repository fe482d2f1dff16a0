"""OpenAI's Conversations API over the conversation store: an OpenAI conversation is a /chat
conversation (the same id, the same owner, the same stored messages), its items are those messages
(gateway.items). Its metadata, when it has any, is a record beside it (stores: Kind.CHAT records).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings

from core import telemetry
from core.errors import ConversationNotFound, NotFound
from gateway import items
from stores import Conversation, Kind, get_store
from stores.base import stored_id


class ItemNotFound(NotFound):
    code = "item_not_found"

    def __init__(self) -> None:
        super().__init__("The conversation has no item with that id.")


def conversation_object(conversation: Conversation, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "object": "conversation",
        "created_at": int(datetime.fromisoformat(conversation.created_at).timestamp()),
        "metadata": metadata,
    }


async def _conversation(owner: str, conversation_id: str) -> Conversation:
    telemetry.note(conversation_id=conversation_id)
    conversation = await get_store().get(Kind.CHAT, conversation_id, owner=owner)
    if conversation is None:
        raise ConversationNotFound()
    return conversation


async def _metadata(owner: str, conversation_id: str) -> dict[str, str]:
    (record,) = await get_store().get_records(Kind.CHAT, [conversation_id], owner=owner)
    return dict(record["metadata"]) if record else {}


async def create(
    owner: str, stored: list[dict[str, Any]], metadata: dict[str, str], *, quota_key: str | None = None
) -> dict[str, Any]:
    """A new conversation, with its first items (stored messages) if any; `quota_key` is whose storage
    quota (CLIENT_STORAGE_BYTES) it counts against."""
    conversation_id = items.new_id("conv")
    telemetry.note(conversation_id=conversation_id)
    store = get_store()
    conversation = await store.append(
        Kind.CHAT,
        conversation_id,
        stored,
        owner=owner,
        model=settings.LLM_MODEL,
        tokens=0,
        quota_key=quota_key,
    )
    if metadata:
        record = {"metadata": metadata}
        await store.put_record(Kind.CHAT, conversation_id, record, owner=owner, quota_key=quota_key)
    return conversation_object(conversation, metadata)


async def retrieve(owner: str, conversation_id: str) -> dict[str, Any]:
    conversation = await _conversation(owner, conversation_id)
    return conversation_object(conversation, await _metadata(owner, conversation_id))


async def update(
    owner: str, conversation_id: str, metadata: dict[str, str], *, quota_key: str | None = None
) -> dict[str, Any]:
    """Replace the conversation's metadata (counted, as the conversation is, against `quota_key`'s
    storage quota)."""
    conversation = await _conversation(owner, conversation_id)
    store = get_store()
    if metadata:
        record = {"metadata": metadata}
        await store.put_record(Kind.CHAT, conversation_id, record, owner=owner, quota_key=quota_key)
    else:
        await store.delete_record(Kind.CHAT, conversation_id, owner=owner)
    return conversation_object(conversation, metadata)


async def delete(owner: str, conversation_id: str) -> dict[str, Any]:
    telemetry.note(conversation_id=conversation_id)
    store = get_store()
    if not await store.delete(Kind.CHAT, conversation_id, owner=owner):
        raise ConversationNotFound()
    await store.delete_record(Kind.CHAT, conversation_id, owner=owner)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


async def list_items(
    owner: str, conversation_id: str, *, after: str | None, limit: int, order: str
) -> dict[str, Any]:
    conversation = await _conversation(owner, conversation_id)
    listed = [items.item_of(m) for m in conversation.messages]
    return items.item_page(listed, after=after, limit=limit, order=order)


async def add_items(
    owner: str, conversation_id: str, stored: list[dict[str, Any]], *, quota_key: str | None = None
) -> dict[str, Any]:
    """Append items (stored messages) to the conversation, as they are: no upstream call."""
    conversation = await _conversation(owner, conversation_id)
    items.check_new_ids(stored, conversation.messages, param="items")
    await get_store().append(
        Kind.CHAT,
        conversation_id,
        stored,
        owner=owner,
        model=conversation.model,
        tokens=0,
        quota_key=quota_key,
    )
    added = [items.item_of(m) for m in stored]
    return items.item_page(added, after=None, limit=len(added), order="asc")


async def retrieve_item(owner: str, conversation_id: str, item_id: str) -> dict[str, Any]:
    conversation = await _conversation(owner, conversation_id)
    for message in conversation.messages:
        if stored_id(message) == item_id:
            return items.item_of(message)
    raise ItemNotFound()


async def delete_item(owner: str, conversation_id: str, item_id: str) -> dict[str, Any]:
    """Remove one item; the conversation, as it is now."""
    conversation = await _conversation(owner, conversation_id)
    if not await get_store().delete_message(Kind.CHAT, conversation_id, item_id, owner=owner):
        raise ItemNotFound()
    return conversation_object(conversation, await _metadata(owner, conversation_id))
