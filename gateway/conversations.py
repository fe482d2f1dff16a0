"""Reading and deleting stored conversations, and the store figures that health answers show."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from core.errors import ConversationNotFound, StoreUnavailable
from gateway import guards
from stores import Conversation, Kind, get_store


async def count_or_none(kind: Kind) -> int | None:
    """A figure for health and info answers: None while the store is down, never an error."""
    try:
        return await get_store().count(kind)
    except StoreUnavailable:
        return None


async def usage_or_none() -> dict[str, Any] | None:
    try:
        return await get_store().usage()
    except StoreUnavailable:
        return None


async def budgets_or_none(request: HttpRequest) -> dict[str, dict[str, int] | None] | None:
    try:
        return await guards.budget_use(request)
    except StoreUnavailable:
        return None


async def page(kind: Kind, *, limit: int, offset: int) -> tuple[int, list[Conversation]]:
    """(how many there are, one page of them), most recently active first."""
    return await get_store().page(kind, limit=limit, offset=offset)


async def get(kind: Kind, conversation_id: str) -> Conversation:
    conversation = await get_store().get(kind, conversation_id)
    if conversation is None:
        raise ConversationNotFound()
    return conversation


async def delete(kind: Kind, conversation_id: str) -> int:
    """Delete one conversation; how many of its kind remain."""
    store = get_store()
    if not await store.delete(kind, conversation_id):
        raise ConversationNotFound()
    return await store.count(kind)


async def clear(kind: Kind) -> int:
    """Delete every conversation of a kind; how many there were."""
    return await get_store().clear(kind)
