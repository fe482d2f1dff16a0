"""What every conversation store is: the Conversation value, the kinds, the protocol, shared helpers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Protocol

from core.auth import ANONYMOUS


class Kind(StrEnum):
    """Which family of endpoints a conversation belongs to; each kind is listed separately."""

    CHAT = "chat"
    MEMORY = "memory"
    TEST = "test"


MAX_MODELS_TRACKED = 200  # distinct model names in the statistics; the rest are counted as "other"
OTHER_MODEL = "other"


@dataclass
class Conversation:
    id: str
    created_at: str
    updated_at: str
    model: str
    total_tokens: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    dropped_messages: int = 0
    message_count: int = 0  # all stored messages, even when `messages` holds only some of them
    owner: str = ANONYMOUS
    title: str = ""  # the first thing the person asked (older conversations: "")

    @property
    def display_title(self) -> str:
        """The stored title, else the first user message still stored."""
        if self.title:
            return self.title
        first = next((m["content"] for m in self.messages if m.get("role") == "user"), "")
        return title_of(first)

    @property
    def last_message(self) -> str:
        return self.messages[-1]["content"] if self.messages else ""


class ConversationStore(Protocol):
    """Conversations belong to an owner (core.auth.Caller.owner): the same id under two owners is two
    conversations, and every read or write names the owner it acts for."""

    kind_name: str

    async def get(self, kind: Kind, conversation_id: str, *, owner: str) -> Conversation | None: ...

    async def append(
        self,
        kind: Kind,
        conversation_id: str,
        messages: list[dict[str, Any]],
        *,
        owner: str,
        model: str,
        tokens: int,
    ) -> Conversation: ...

    async def page(
        self, kind: Kind, *, owner: str | None, limit: int, offset: int
    ) -> tuple[int, list[Conversation]]:
        """One owner's conversations (every owner's for None: admins), most recently active first."""
        ...

    async def replace_last_turn(
        self,
        kind: Kind,
        conversation_id: str,
        messages: list[dict[str, Any]],
        *,
        owner: str,
        model: str,
        tokens: int,
    ) -> Conversation | None:
        """Atomically drop the last turn (its user message and what follows) and append `messages`, as
        if they had been the only turn; its reply's `tokens` leave the total. None if there is no such
        conversation."""
        ...

    async def delete(self, kind: Kind, conversation_id: str, *, owner: str) -> bool: ...

    async def clear(self, kind: Kind, *, owner: str) -> int: ...

    async def count(self, kind: Kind) -> int: ...

    async def ping(self) -> None: ...

    async def record_call(
        self, model: str, *, prompt_tokens: int, completion_tokens: int, error: str | None
    ) -> None: ...

    async def usage(self) -> dict[str, Any]: ...

    async def cache_get(self, key: str) -> Any: ...

    async def cache_set(self, key: str, value: Any, ttl: int | None) -> None: ...

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        """Count one event in the current fixed window: (count so far, seconds until it resets)."""
        ...


TITLE_CHARS = 80


def title_of(text: str) -> str:
    return " ".join(str(text).split())[:TITLE_CHARS]


def title_for(messages: list[dict[str, Any]]) -> str:
    """A new conversation's title: its first user message."""
    return title_of(next((m["content"] for m in messages if m.get("role") == "user"), ""))


def last_turn_start(messages: list[dict[str, Any]]) -> int:
    """Where the last turn begins: its user message (the end, when there is none)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return len(messages)


def slot_of(owner: str, conversation_id: str) -> str:
    """Where a conversation is kept: owner ids never hold a "/", so no two owners' slots can meet."""
    return f"{owner}/{conversation_id}"


def fixed_window(window: int) -> tuple[int, int]:
    """The current rate-limit window of `window` seconds: (its number, whole seconds until it ends)."""
    now = time.time()
    slot = int(now // window)
    return slot, max(1, int((slot + 1) * window - now + 0.999))


def astuple_shallow(conversation: Conversation) -> tuple[Any, ...]:
    return tuple(getattr(conversation, f.name) for f in fields(Conversation))


def trim(conversation: Conversation, max_messages: int) -> None:
    """Drop the oldest messages beyond the cap, never leaving an assistant reply first."""
    excess = len(conversation.messages) - max_messages
    if excess <= 0:
        return
    kept = conversation.messages[excess:]
    while kept and kept[0]["role"] == "assistant":
        kept = kept[1:]
    conversation.dropped_messages += len(conversation.messages) - len(kept)
    conversation.messages = kept
    conversation.message_count = len(kept)
