"""Reading and deleting stored conversations, and the store figures that health answers show."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from core import telemetry
from core.auth import AdminOnly, Caller
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


async def page(kind: Kind, caller: Caller, *, limit: int, offset: int) -> tuple[int, list[Conversation]]:
    """(how many there are, one page of them), most recently active first: the caller's own, or every
    owner's for an admin."""
    owner = None if caller.admin else caller.owner
    return await get_store().page(kind, owner=owner, limit=limit, offset=offset)


def _owner(caller: Caller, owner: str | None) -> str:
    """Whose conversation: the caller's own; an admin may name another owner."""
    if owner is None or owner == caller.owner:
        return caller.owner
    if not caller.admin:
        raise AdminOnly()
    return owner


async def get(kind: Kind, conversation_id: str, caller: Caller, *, owner: str | None = None) -> Conversation:
    telemetry.note(conversation_id=conversation_id)
    conversation = await get_store().get(kind, conversation_id, owner=_owner(caller, owner))
    if conversation is None:
        raise ConversationNotFound()
    return conversation


async def delete(kind: Kind, conversation_id: str, caller: Caller, *, owner: str | None = None) -> int:
    """Delete one conversation and its metadata (/v1/conversations); how many of its kind remain (every
    owner's: an aggregate figure)."""
    telemetry.note(conversation_id=conversation_id)
    store = get_store()
    whose = _owner(caller, owner)
    if not await store.delete(kind, conversation_id, owner=whose):
        raise ConversationNotFound()
    await store.delete_record(kind, conversation_id, owner=whose)  # a new one of that id starts bare
    return await store.count(kind)


async def clear(kind: Kind, caller: Caller) -> int:
    """Delete every conversation of a kind that the caller owns; how many there were."""
    return await get_store().clear(kind, owner=caller.owner)
