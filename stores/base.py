"""What every conversation store is: the Conversation value, the kinds, the protocol, shared helpers."""

from __future__ import annotations

import hashlib
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
    RESPONSE = "response"  # stored responses of /v1/responses: records only, never conversations


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

    async def delete_message(self, kind: Kind, conversation_id: str, message_id: str, *, owner: str) -> bool:
        """Remove one message (by `stored_id()`) from a conversation; False when there was none."""
        ...

    async def put_record(self, kind: Kind, record_id: str, record: dict[str, Any], *, owner: str) -> None:
        """Keep a small JSON document (a stored response, a conversation's metadata) for the owner, on
        the conversations' terms: CONVERSATION_TTL seconds, at most CONVERSATION_MAX of a kind (the
        least recently written go first)."""
        ...

    async def get_records(
        self, kind: Kind, record_ids: list[str], *, owner: str
    ) -> list[dict[str, Any] | None]:
        """The owner's records of these ids, in order (None for each one missing)."""
        ...

    async def delete_record(self, kind: Kind, record_id: str, *, owner: str) -> bool: ...


def slot_of(owner: str, conversation_id: str) -> str:
    """Where a conversation is kept: owner ids never hold a "/", so no two owners' slots can meet."""
    return f"{owner}/{conversation_id}"


def stored_id(message: dict[str, Any]) -> str:
    """A stored message's id: its own `id`, or (messages stored before ids were kept) one made from
    its time, role and text, the same every time it is read."""
    own = message.get("id")
    if isinstance(own, str) and own:
        return own
    seed = f"{message.get('timestamp', '')}\x00{message.get('role', '')}\x00{message.get('content', '')}"
    return "msg_" + hashlib.sha256(seed.encode()).hexdigest()[:32]


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
