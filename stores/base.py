"""What every conversation store is: the Conversation value, the kinds, the protocol, shared helpers."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson

from core.auth import ANONYMOUS


class Kind(StrEnum):
    """Which family of endpoints a conversation belongs to; each kind is listed separately."""

    CHAT = "chat"
    MEMORY = "memory"
    TEST = "test"
    RESPONSE = "response"  # stored responses of /v1/responses: records only, never conversations


# Measured (tests/test_store_cost.py, tracemalloc for the local store, used_memory for Redis): what a
# store keeps for one message besides its text (the dict, its timestamp and model, the list slot; in
# Redis the list entry and its cost beside it) and for one conversation besides its messages (its
# record, its places in the recency indexes and quota). Rounded up.
MESSAGE_OVERHEAD = 512
CONVERSATION_OVERHEAD = 1536

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
    replayed: bool = False  # a write of a turn already stored (the same turn id): nothing was added

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


@dataclass(frozen=True)
class Count:
    """One fixed-window counter (a rate limit, a token budget): add `amount` (0 only reads it; below 0
    gives back). With a `cap`, the amount is added only if the total stays within it: the answer is the
    total it would have made, so a total over the cap says nothing was added (a reservation refused).
    `slot`: the window to count in (None: the current one), so a reservation is settled in its own."""

    key: str
    amount: int
    window: int
    cap: int = 0
    slot: int | None = None

    def window_slot(self) -> tuple[int, int]:
        """(the window's number, whole seconds until the current one ends)."""
        slot, reset = fixed_window(self.window)
        return (slot if self.slot is None else self.slot), reset


@dataclass(frozen=True)
class CallRecord:
    """One upstream call for the statistics, and the token budgets its tokens are charged to."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    charges: tuple[Count, ...] = ()


@dataclass(frozen=True)
class TurnWrite:
    """A turn to store: appended, or replacing the conversation's last turn (`replace_last`).

    `turn_id` names the turn: a second write with the same id (a client retrying a turn whose answer it
    never got) stores nothing and answers what the first one stored (Conversation.replayed)."""

    kind: Kind
    conversation_id: str
    messages: list[dict[str, Any]]
    owner: str
    model: str
    tokens: int
    quota_key: str | None = None
    replace_last: bool = False
    turn_id: str | None = None


@dataclass(frozen=True)
class RecordWrite:
    """A record to keep (see ConversationStore.put_record)."""

    kind: Kind
    record_id: str
    record: dict[str, Any]
    owner: str
    quota_key: str | None = None  # whose CLIENT_STORAGE_BYTES its bytes count against (None: nobody's)


@dataclass(frozen=True)
class Admission:
    """What a request reads before its upstream call, in one step: its counters (in order, each
    (total, seconds until reset)), a conversation (None: none asked for, or none stored) and records."""

    counts: list[tuple[int, int]]
    conversation: Conversation | None = None
    records: list[dict[str, Any] | None] = field(default_factory=list)
    turn_seen: bool = False  # the turn id asked about was stored already (a client retrying it)


TURN_ID_TTL = 600  # seconds a turn id is remembered: a client retries its turn well within


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
        quota_key: str | None = None,
        turn_id: str | None = None,
    ) -> Conversation:
        """Add messages to a conversation (made if new) and keep every bound: CONVERSATION_MAX_MESSAGES
        and the conversation's own byte cap drop its oldest whole turns; over CLIENT_STORAGE_BYTES the
        least recently active other conversations of `quota_key` go, over STORE_MAX_BYTES anyone's,
        over CONVERSATION_MAX those of its kind. The messages just added always stay."""
        ...

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
        turn_id: str | None = None,
    ) -> Conversation | None:
        """Atomically drop the last turn (its user message and what follows) and append `messages`, as
        if they had been the only turn; its reply's `tokens` leave the total. None if there is no such
        conversation."""
        ...

    async def admit(
        self,
        counts: list[Count],
        *,
        conversation: tuple[Kind, str, str] | None = None,
        records: tuple[Kind, list[str], str] | None = None,
        turn: tuple[str, str] | None = None,
    ) -> Admission:
        """Count and read what a request needs before its upstream call, in one round trip: the counters
        (`Count`, as `tally`), a conversation (kind, id, owner), records (kind, ids, owner) and whether
        a turn id (owner, id; see TurnWrite.turn_id) was stored already."""
        ...

    async def settle(self, counts: list[Count]) -> None:
        """Add these counts (a token budget's give-back), once: sent twice (a connection broken before
        the answer came), they are added once."""
        ...

    async def commit(
        self,
        *,
        turn: TurnWrite | None = None,
        record: RecordWrite | None = None,
        call: CallRecord | None = None,
    ) -> Conversation | None:
        """What a request writes after its upstream call, atomically and in one round trip: its turn
        (as append or replace_last_turn), a record (as put_record), the call's statistics and token
        charges (as record_call). The turn's conversation as append answers (None: no turn, or no
        conversation to replace a turn of; the rest is written all the same)."""
        ...

    async def delete(self, kind: Kind, conversation_id: str, *, owner: str) -> bool: ...

    async def clear(self, kind: Kind, *, owner: str) -> int: ...

    async def count(self, kind: Kind) -> int: ...

    async def ping(self) -> None: ...

    async def record_call(
        self,
        model: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        error: str | None,
        charges: tuple[Count, ...] = (),
    ) -> None:
        """Count one upstream call in the statistics, and its `charges` (token budgets), at once."""
        ...

    async def usage(self) -> dict[str, Any]: ...

    async def cache_get(self, key: str) -> Any: ...

    async def cache_set(self, key: str, value: Any, ttl: int | None) -> None: ...

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        """Count one event in the current fixed window: (count so far, seconds until it resets)."""
        ...

    async def tally(self, key: str, amount: int, window: int) -> tuple[int, int]:
        """Add `amount` to the counter of the current fixed window (0 only reads it): (its total now,
        seconds until it resets). Atomic, so concurrent callers (workers, with Redis) never lose one."""
        ...

    async def stored_bytes(self, quota_key: str | None = None) -> int:
        """What the stored conversations cost (see conversation_cost), all or those of one quota key."""
        ...

    def conversation_cost(self, messages: list[dict[str, Any]]) -> int:
        """What one conversation of these messages costs this store, in bytes (the unit of
        STORE_MAX_BYTES and CLIENT_STORAGE_BYTES): CONVERSATION_OVERHEAD plus each message's cost."""
        ...

    async def delete_message(self, kind: Kind, conversation_id: str, message_id: str, *, owner: str) -> bool:
        """Remove one message (by `stored_id()`) from a conversation; False when there was none."""
        ...

    async def put_record(
        self, kind: Kind, record_id: str, record: dict[str, Any], *, owner: str, quota_key: str | None = None
    ) -> None:
        """Keep a JSON document (a stored response, a conversation's metadata) for the owner, on the
        conversations' terms: CONVERSATION_TTL seconds, at most CONVERSATION_MAX of a kind, and its
        kind's bytes within what the conversations and the other kinds' records leave of STORE_MAX_BYTES
        (the least recently written of its kind go first). With a `quota_key`, that key's records of a
        kind cost at most CLIENT_STORAGE_BYTES: beyond it its own oldest go, nobody else's."""
        ...

    async def get_records(
        self, kind: Kind, record_ids: list[str], *, owner: str
    ) -> list[dict[str, Any] | None]:
        """The owner's records of these ids, in order (None for each one missing)."""
        ...

    async def delete_record(self, kind: Kind, record_id: str, *, owner: str) -> bool: ...


TITLE_CHARS = 80


def title_of(text: str) -> str:
    return " ".join(str(text).split())[:TITLE_CHARS]


def title_for(messages: list[dict[str, Any]]) -> str:
    """A new conversation's title: its first user message."""
    return title_of(next((m["content"] for m in messages if m.get("role") == "user"), ""))


def is_reply(message: dict[str, Any]) -> bool:
    """A model's turn (its text or a function call) or a function's output: no place for a
    conversation, or its context, to start (TRIM_TURNS in stores/redis_store.py says the same)."""
    return (message.get("type") or "message") != "message" or message.get("role") == "assistant"


def last_turn_start(messages: list[dict[str, Any]]) -> int:
    """Where the last turn begins: its user message (the end, when there is none)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return len(messages)


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


def message_cost(message: dict[str, Any]) -> int:
    """What keeping one message costs the local store, in bytes: its text as CPython keeps it (1, 2 or 4
    bytes a character, by the widest one in it, plus the UTF-8 copy that serialising it leaves behind:
    one emoji makes a long ASCII text cost five times its UTF-8 length), or its JSON if that is longer,
    plus MESSAGE_OVERHEAD (the dict, its timestamp and model, the list slot)."""
    encoded = orjson.dumps(message)  # after this the text's UTF-8 copy exists, and getsizeof counts it
    return max(len(encoded), sys.getsizeof(message.get("content", ""))) + MESSAGE_OVERHEAD


def encoded_cost(encoded: bytes) -> int:
    """What keeping one message costs Redis, which keeps its JSON: that, a quarter more for its
    allocator's size classes (a quarter apart), plus MESSAGE_OVERHEAD."""
    return len(encoded) * 5 // 4 + MESSAGE_OVERHEAD


def conversation_cap(quota_key: str | None, store_max: int, client_max: int) -> int:
    """The most one conversation may cost: the whole store's bound, or its client's quota if smaller."""
    return min(store_max, client_max) if quota_key is not None and client_max else store_max
