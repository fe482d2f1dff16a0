"""The default store: one process's conversations in plain Python structures.

A message stays the dict it was made as: an append adds it to its conversation's list (no copy of the
conversation, no pickling), and the byte figures every bound needs are kept up to date as they change.
Nothing here awaits, so an append can never interleave with another one in this process.

For the snapshot writer (stores/snapshot.py) it counts its changes, hands over its index and figures in
one cheap step on the loop (`contents`), lets a thread read one whole conversation (`read`), and takes
conversations and figures back at start-up (`restore`, `restore_usage`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import caches

from core.clock import utc_now_iso
from core.jsonio import dumps_to_keep
from stores.base import (
    CONVERSATION_OVERHEAD,
    MAX_MODELS_TRACKED,
    MESSAGE_OVERHEAD,
    OTHER_MODEL,
    TURN_ID_TTL,
    Admission,
    CallRecord,
    Conversation,
    Count,
    Kind,
    RecordWrite,
    TurnWrite,
    conversation_cap,
    is_reply,
    last_turn_start,
    message_cost,
    slot_of,
    stored_id,
    title_for,
)

Key = tuple[Kind, str]
MAX_TURN_IDS = 10_000


@dataclass(eq=False)
class _Entry:
    """One stored conversation and what the bounds need to know about it."""

    kind: Kind
    conversation: Conversation
    bytes: int = CONVERSATION_OVERHEAD
    quota_key: str | None = None
    expires: float = 0.0  # time.monotonic() after which it is gone

    @property
    def key(self) -> Key:
        return (self.kind, slot_of(self.conversation.owner, self.conversation.id))


@dataclass(eq=False)
class _Quota:
    """One quota key's conversations, least recently written first, and what they cost together."""

    bytes: int = 0
    entries: OrderedDict[Key, _Entry] = field(default_factory=OrderedDict)


def _oldest_other(entries: OrderedDict[Any, _Entry], current: _Entry) -> _Entry | None:
    for entry in islice(entries.values(), 2):
        if entry is not current:
            return entry
    return None


class LocalStore:
    """One process's store, with recency indexes per kind, overall and per quota key."""

    kind_name = "local-memory"

    def __init__(self) -> None:
        self._values = caches["default"]
        # least recently written first: per kind (listing, CONVERSATION_MAX) and overall (STORE_MAX_BYTES),
        # each conversation under its slot, "owner/id"
        self._kinds: dict[Kind, OrderedDict[str, _Entry]] = {k: OrderedDict() for k in Kind}
        self._recent: OrderedDict[Key, _Entry] = OrderedDict()
        self._quotas: dict[str, _Quota] = {}
        self._bytes = 0
        self._records: dict[Kind, _Records] = {k: _Records() for k in Kind}
        self._stats = _Stats()
        # turn id -> (when it is forgotten, what its write answered); oldest first, at most MAX_TURN_IDS
        self._turns: OrderedDict[str, tuple[float, Conversation | None]] = OrderedDict()
        self.changes = 0  # bumped by every write; the snapshot writer saves only when it moved

    # Bookkeeping: an entry is counted (bytes, quota) only while attached.

    def _attach(self, entry: _Entry) -> None:
        key = entry.key
        self._recent[key] = entry
        self._recent.move_to_end(key)
        index = self._kinds[entry.kind]
        index[key[1]] = entry
        index.move_to_end(key[1])
        self._bytes += entry.bytes
        if entry.quota_key is not None:
            quota = self._quotas.setdefault(entry.quota_key, _Quota())
            quota.bytes += entry.bytes
            quota.entries[key] = entry

    def _detach(self, entry: _Entry) -> None:
        self._bytes -= entry.bytes
        if entry.quota_key is not None:
            quota = self._quotas[entry.quota_key]
            quota.bytes -= entry.bytes
            del quota.entries[entry.key]
            if not quota.entries:
                del self._quotas[entry.quota_key]

    def _forget(self, entry: _Entry) -> None:
        self._detach(entry)
        del self._recent[entry.key]
        del self._kinds[entry.kind][entry.key[1]]

    def _expire(self) -> None:
        now = time.monotonic()
        while self._recent:
            oldest = next(iter(self._recent.values()))
            if oldest.expires > now:
                break
            self._forget(oldest)

    def _live(self, kind: Kind, slot: str) -> _Entry | None:
        self._expire()
        entry = self._kinds[kind].get(slot)
        if entry is not None and entry.expires <= time.monotonic():  # TTL lowered since it was written
            self._forget(entry)
            return None
        return entry

    async def get(self, kind: Kind, conversation_id: str, *, owner: str) -> Conversation | None:
        entry = self._live(kind, slot_of(owner, conversation_id))
        if entry is None:
            return None
        return replace(entry.conversation, messages=list(entry.conversation.messages))

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
        seen = self._seen_turn(turn_id, messages)
        if seen is not None:
            return seen
        now = utc_now_iso()
        self.changes += 1
        entry = self._live(kind, slot_of(owner, conversation_id))
        if entry is None:
            conversation = Conversation(
                id=conversation_id,
                created_at=now,
                updated_at=now,
                model=model,
                owner=owner,
                title=title_for(messages),
            )
            entry = _Entry(kind, conversation)
        else:
            self._detach(entry)
        conversation = entry.conversation
        conversation.messages.extend(messages)
        conversation.model = model
        conversation.updated_at = now
        conversation.total_tokens += tokens
        entry.bytes += sum(message_cost(m) for m in messages)
        cap = conversation_cap(quota_key, settings.STORE_MAX_BYTES, settings.CLIENT_STORAGE_BYTES)
        _trim(entry, keep=len(messages), cap=cap)
        entry.quota_key = quota_key
        entry.expires = time.monotonic() + settings.CONVERSATION_TTL
        self._attach(entry)
        self._evict_for(entry)
        return self._remember_turn(turn_id, replace(conversation, messages=list(messages)))

    def _seen_turn(self, turn_id: str | None, messages: list[dict[str, Any]]) -> Conversation | None:
        """What the write of this turn id answered (with these messages), if it was stored already."""
        if turn_id is None:
            return None
        now = time.monotonic()
        while self._turns and next(iter(self._turns.values()))[0] < now:
            self._turns.popitem(last=False)
        seen = self._turns.get(turn_id)
        if seen is None or seen[1] is None:
            return None
        return replace(seen[1], messages=list(messages), replayed=True)

    def _remember_turn(self, turn_id: str | None, answer: Conversation) -> Conversation:
        if turn_id is not None:  # its figures only: the messages stay with the conversation
            self._turns[turn_id] = (time.monotonic() + TURN_ID_TTL, replace(answer, messages=[]))
            if len(self._turns) > MAX_TURN_IDS:
                self._turns.popitem(last=False)
        return answer

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
        seen = self._seen_turn(turn_id, messages)
        if seen is not None:
            return seen
        entry = self._live(kind, slot_of(owner, conversation_id))
        if entry is None:
            return None
        self.changes += 1
        self._detach(entry)
        conversation = entry.conversation
        start = last_turn_start(conversation.messages)
        removed = conversation.messages[start:]
        del conversation.messages[start:]
        if start == 0:  # its only turn replaced: the new question is its title
            conversation.title = title_for(messages)
        conversation.messages.extend(messages)
        conversation.model = model
        conversation.updated_at = utc_now_iso()
        freed = sum(int(m.get("tokens", 0)) for m in removed)
        conversation.total_tokens = max(0, conversation.total_tokens - freed + tokens)
        entry.bytes += sum(message_cost(m) for m in messages) - sum(message_cost(m) for m in removed)
        cap = conversation_cap(entry.quota_key, settings.STORE_MAX_BYTES, settings.CLIENT_STORAGE_BYTES)
        _trim(entry, keep=len(messages), cap=cap)
        entry.expires = time.monotonic() + settings.CONVERSATION_TTL
        self._attach(entry)
        self._evict_for(entry)
        return self._remember_turn(turn_id, replace(conversation, messages=list(messages)))

    async def admit(
        self,
        counts: list[Count],
        *,
        conversation: tuple[Kind, str, str] | None = None,
        records: tuple[Kind, list[str], str] | None = None,
        turn: tuple[str, str] | None = None,
    ) -> Admission:
        totals = [self._count(c) for c in counts]
        found = None
        if conversation is not None:
            kind, conversation_id, owner = conversation
            found = await self.get(kind, conversation_id, owner=owner)
        kept = []
        if records is not None:
            kind, record_ids, owner = records
            kept = await self.get_records(kind, record_ids, owner=owner)
        seen = turn is not None and self._seen_turn(turn[1], []) is not None
        return Admission(totals, found, kept, turn_seen=seen)

    async def settle(self, counts: list[Count]) -> None:
        for count in counts:
            self._count(count)

    async def commit(
        self,
        *,
        turn: TurnWrite | None = None,
        record: RecordWrite | None = None,
        call: CallRecord | None = None,
    ) -> Conversation | None:
        # Nothing here awaits anything that waits: no other task runs between these writes.
        written = None
        if turn is not None and turn.replace_last:
            written = await self.replace_last_turn(
                turn.kind,
                turn.conversation_id,
                turn.messages,
                owner=turn.owner,
                model=turn.model,
                tokens=turn.tokens,
                turn_id=turn.turn_id,
            )
        elif turn is not None:
            written = await self.append(
                turn.kind,
                turn.conversation_id,
                turn.messages,
                owner=turn.owner,
                model=turn.model,
                tokens=turn.tokens,
                quota_key=turn.quota_key,
                turn_id=turn.turn_id,
            )
        if record is not None:
            await self.put_record(
                record.kind, record.record_id, record.record, owner=record.owner, quota_key=record.quota_key
            )
        if call is not None:
            await self.record_call(
                call.model,
                prompt_tokens=call.prompt_tokens,
                completion_tokens=call.completion_tokens,
                error=call.error,
                charges=call.charges,
            )
        return written

    def _evict_for(self, current: _Entry) -> None:
        """The bounds, in order: the client's quota (its own oldest conversations go), the whole store's
        bytes, then the count per kind (anyone's least recently written go)."""
        evicted = 0
        client_max = settings.CLIENT_STORAGE_BYTES
        if current.quota_key is not None and client_max:
            quota = self._quotas[current.quota_key]
            while quota.bytes > client_max and (victim := _oldest_other(quota.entries, current)):
                self._forget(victim)
                evicted += 1
        room = settings.STORE_MAX_BYTES - self._record_bytes()
        if self._bytes > room:  # expired records leave their room first (a record's write sweeps them too)
            for records in self._records.values():
                records.prune()
            room = settings.STORE_MAX_BYTES - self._record_bytes()
        while self._bytes > room and (victim := _oldest_other(self._recent, current)):
            self._forget(victim)
            evicted += 1
        index = self._kinds[current.kind]
        while len(index) > settings.CONVERSATION_MAX and (victim := _oldest_other(index, current)):
            self._forget(victim)
            evicted += 1
        self._stats.evictions += evicted

    def _owned(self, kind: Kind, owner: str | None) -> list[_Entry]:
        """The owner's conversations (every owner's for None), most recently written first."""
        self._expire()
        newest_first = reversed(self._kinds[kind].values())
        return [e for e in newest_first if owner is None or e.conversation.owner == owner]

    async def page(
        self, kind: Kind, *, owner: str | None, limit: int, offset: int
    ) -> tuple[int, list[Conversation]]:
        entries = self._owned(kind, owner)
        return len(entries), [_ends(e.conversation) for e in entries[offset : offset + limit]]

    async def delete(self, kind: Kind, conversation_id: str, *, owner: str) -> bool:
        entry = self._live(kind, slot_of(owner, conversation_id))
        if entry is None:
            return False
        self._forget(entry)
        self.changes += 1
        return True

    async def clear(self, kind: Kind, *, owner: str) -> int:
        entries = self._owned(kind, owner)
        if entries:
            self.changes += 1
        for entry in entries:
            self._forget(entry)
        return len(entries)

    async def count(self, kind: Kind) -> int:
        self._expire()
        return len(self._kinds[kind])

    async def stored_bytes(self, quota_key: str | None = None) -> int:
        self._expire()
        if quota_key is None:
            return self._bytes
        quota = self._quotas.get(quota_key)
        return quota.bytes if quota else 0

    async def delete_message(self, kind: Kind, conversation_id: str, message_id: str, *, owner: str) -> bool:
        entry = self._live(kind, slot_of(owner, conversation_id))
        if entry is None:
            return False
        conversation = entry.conversation
        kept = [m for m in conversation.messages if stored_id(m) != message_id]
        if len(kept) == len(conversation.messages):
            return False
        # its bytes leave the counts where they stand: neither its recency nor its TTL moves (it would
        # otherwise be listed as the most recent, still counted once expired)
        freed = sum(message_cost(m) for m in conversation.messages if stored_id(m) == message_id)
        entry.bytes -= freed
        self._bytes -= freed
        if entry.quota_key is not None:
            self._quotas[entry.quota_key].bytes -= freed
        conversation.messages[:] = kept
        conversation.message_count = len(kept)
        self.changes += 1
        return True

    async def put_record(
        self, kind: Kind, record_id: str, record: dict[str, Any], *, owner: str, quota_key: str | None = None
    ) -> None:
        slot, raw = slot_of(owner, record_id), dumps_to_keep(record)
        self._stats.evictions += self._records[kind].put(
            slot, raw, room=self._room(kind), quota_key=quota_key
        )
        self.changes += 1

    def _room(self, kind: Kind) -> int:
        """What the conversations and the other kinds' records leave of STORE_MAX_BYTES to a kind's."""
        return settings.STORE_MAX_BYTES - self._bytes - (self._record_bytes() - self._records[kind].bytes)

    def _record_bytes(self) -> int:
        return sum(records.bytes for records in self._records.values())

    async def get_records(
        self, kind: Kind, record_ids: list[str], *, owner: str
    ) -> list[dict[str, Any] | None]:
        records = self._records[kind]
        found = [records.get(slot_of(owner, record_id)) for record_id in record_ids]
        return [None if raw is None else orjson.loads(raw) for raw in found]

    async def delete_record(self, kind: Kind, record_id: str, *, owner: str) -> bool:
        deleted = self._records[kind].delete(slot_of(owner, record_id))
        if deleted:
            self.changes += 1
        return deleted

    def reset(self) -> None:
        """Forget every conversation and figure (a snapshot that failed half-way through loading)."""
        self._kinds = {k: OrderedDict() for k in Kind}
        self._recent.clear()
        self._quotas.clear()
        self._bytes = 0
        self._records = {k: _Records() for k in Kind}
        self._stats = _Stats()
        self.changes += 1

    def contents(self) -> LocalContents:
        """Every conversation's slot and expiry, least recently active first, and the usage figures: a
        few C-level copies, cheap enough for the event loop (the conversations are read by `read`)."""
        return LocalContents(
            changes=self.changes,
            taken_at=utc_now_iso(),
            wall_minus_monotonic=time.time() - time.monotonic(),
            index={
                kind: [(slot, e.expires) for slot, e in index.items()] for kind, index in self._kinds.items()
            },
            usage=self._stats.export(),
            records={kind: records.index() for kind, records in self._records.items()},
        )

    def read(self, kind: Kind, slot: str) -> Conversation | None:
        """One conversation, whole (a copy of its message list); safe from the snapshot's thread."""
        entry = self._kinds[kind].get(slot)
        if entry is None:
            return None
        return replace(entry.conversation, messages=list(entry.conversation.messages))

    def restore(self, kind: Kind, conversation: Conversation, expires_in: float) -> int:
        """Put back one saved conversation (start-up, before serving), least recently active first; over
        the store's bounds the oldest go. How many went."""
        before = sum(len(index) for index in self._kinds.values())
        entry = _Entry(kind, conversation)
        entry.bytes = self.conversation_cost(conversation.messages)
        entry.expires = time.monotonic() + expires_in
        self._attach(entry)
        self._evict_for(entry)
        return before + 1 - sum(len(index) for index in self._kinds.values())

    def read_record(self, kind: Kind, slot: str) -> bytes | None:
        """One record's JSON, as kept; safe from the snapshot's thread."""
        return self._records[kind].read(slot)

    def restore_record(
        self, kind: Kind, slot: str, raw: bytes, expires_in: float, quota_key: str | None = None
    ) -> int:
        """Put back one saved record (start-up), least recently written first; over the bounds the
        oldest go. How many went."""
        return self._records[kind].put(
            slot, raw, expires_in=expires_in, room=self._room(kind), quota_key=quota_key
        )

    def restore_usage(self, usage: dict[str, Any]) -> None:
        """Put back saved usage figures (the shape `contents` gives)."""
        self._stats = _Stats(
            requests=usage["requests"],
            errors=usage["errors"],
            evictions=usage["evictions"],
            by_model={k: dict(v) for k, v in usage["by_model"].items()},
            errors_by_kind=dict(usage["errors_by_kind"]),
        )

    def conversation_cost(self, messages: list[dict[str, Any]]) -> int:
        return CONVERSATION_OVERHEAD + sum(message_cost(m) for m in messages)

    async def ping(self) -> None:
        return None

    async def record_call(
        self,
        model: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        error: str | None,
        charges: tuple[Count, ...] = (),
    ) -> None:
        self.changes += 1
        self._stats.record(model, prompt_tokens, completion_tokens, error)
        for charge in charges:
            self._count(charge)

    async def usage(self) -> dict[str, Any]:
        return self._stats.summary()

    async def cache_get(self, key: str) -> Any:
        return self._values.get(key)

    async def cache_set(self, key: str, value: Any, ttl: int | None) -> None:
        self._values.set(key, value, ttl)

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        return await self.tally(key, 1, window)

    async def tally(self, key: str, amount: int, window: int) -> tuple[int, int]:
        return self._count(Count(key, amount, window))

    def _count(self, count: Count) -> tuple[int, int]:
        slot, reset = count.window_slot()
        counter, amount = f"{count.key}:{slot}", count.amount
        if not amount or count.cap:
            held = int(self._values.get(counter, 0))
            if not amount:
                return held, reset
            if held + amount > count.cap:  # refused: nothing added
                return held + amount, reset
        try:
            return int(self._values.incr(counter, amount)), reset
        except ValueError:  # the window's first count
            self._values.set(counter, amount, count.window + 1)
            return amount, reset


@dataclass(frozen=True)
class LocalContents:
    """What the loop hands the snapshot writer."""

    changes: int
    taken_at: str
    wall_minus_monotonic: float  # add to a monotonic expiry for wall-clock seconds
    index: dict[Kind, list[tuple[str, float]]]  # (slot, monotonic expiry), least recently active first
    usage: dict[str, Any]
    # (slot, monotonic expiry, quota key) of each record, least recently written first
    records: dict[Kind, list[tuple[str, float, str | None]]] = field(default_factory=dict)


def _ends(conversation: Conversation) -> Conversation:
    """A listing's copy: the first message (for a title) and the last (for its preview)."""
    messages = conversation.messages
    return replace(conversation, messages=[*messages[:1], *messages[1:][-1:]])


def _trim(entry: _Entry, *, keep: int, cap: int) -> None:
    """Drop the conversation's oldest messages while it has more than CONVERSATION_MAX_MESSAGES or costs
    more than `cap`, never leaving a reply first and always keeping the last `keep` messages."""
    conversation = entry.conversation
    messages = conversation.messages
    excess = len(messages) - settings.CONVERSATION_MAX_MESSAGES
    droppable = len(messages) - keep
    dropped = freed = 0
    while dropped < droppable and (
        dropped < excess or entry.bytes - freed > cap or (dropped and is_reply(messages[dropped]))
    ):
        freed += message_cost(messages[dropped])
        dropped += 1
    if dropped:
        del messages[:dropped]
        conversation.dropped_messages += dropped
        entry.bytes -= freed
    conversation.message_count = len(messages)


@dataclass(eq=False)
class _RecordQuota:
    """One quota key's records of a kind: their slots, least recently written first, and their cost."""

    bytes: int = 0
    slots: OrderedDict[str, None] = field(default_factory=OrderedDict)


class _Records:
    """One kind's records: JSON bytes by slot, oldest write first, each with its expiry (monotonic) and
    the quota key it counts against. Kept as bytes, so a caller's later change to a record it put or got
    never reaches the store. Bounded like conversations: CONVERSATION_TTL, at most CONVERSATION_MAX of
    them, a quota key's at most CLIENT_STORAGE_BYTES (its own oldest go first), and their bytes at most
    the `room` STORE_MAX_BYTES leaves beside the conversations and other records (the least recently
    written go first); the one just written always stays."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes, str | None]] = OrderedDict()
        self._quotas: dict[str, _RecordQuota] = {}
        self.bytes = 0

    def _pop(self, slot: str) -> tuple[float, bytes, str | None] | None:
        entry = self._entries.pop(slot, None)
        if entry is not None:
            cost = _record_cost(entry[1])
            self.bytes -= cost
            if entry[2] is not None:
                quota = self._quotas[entry[2]]
                quota.bytes -= cost
                del quota.slots[slot]
                if not quota.slots:
                    del self._quotas[entry[2]]
        return entry

    def prune(self) -> None:
        """Forget the records past their expiry."""
        now = time.monotonic()
        while self._entries and (oldest := next(iter(self._entries.items())))[1][0] <= now:
            self._pop(oldest[0])

    def put(
        self,
        slot: str,
        raw: bytes,
        *,
        room: int,
        quota_key: str | None = None,
        expires_in: float | None = None,
    ) -> int:
        """Keep a record (replacing the slot's); how many older ones went to keep the bounds."""
        self.prune()
        self._pop(slot)
        ttl = settings.CONVERSATION_TTL if expires_in is None else expires_in
        self._entries[slot] = (time.monotonic() + ttl, raw, quota_key)
        cost = _record_cost(raw)
        self.bytes += cost
        evicted = 0
        if quota_key is not None:
            quota = self._quotas.setdefault(quota_key, _RecordQuota())
            quota.slots[slot] = None
            quota.bytes += cost
            client_max = settings.CLIENT_STORAGE_BYTES
            while client_max and quota.bytes > client_max and (oldest := next(iter(quota.slots))) != slot:
                self._pop(oldest)
                evicted += 1
        while len(self._entries) > 1 and (
            len(self._entries) > settings.CONVERSATION_MAX or self.bytes > room
        ):
            self._pop(next(iter(self._entries)))
            evicted += 1
        return evicted

    def get(self, slot: str) -> bytes | None:
        entry = self._entries.get(slot)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def read(self, slot: str) -> bytes | None:
        """As `get`, without the clock (the snapshot writer's thread, which took the index before)."""
        entry = self._entries.get(slot)
        return None if entry is None else entry[1]

    def delete(self, slot: str) -> bool:
        entry = self._pop(slot)
        return entry is not None and entry[0] > time.monotonic()

    def index(self) -> list[tuple[str, float, str | None]]:
        """(slot, monotonic expiry, quota key) of every record, least recently written first."""
        self.prune()
        return [(slot, expires, quota_key) for slot, (expires, _, quota_key) in self._entries.items()]


def _record_cost(raw: bytes) -> int:
    """What keeping one record costs: its JSON bytes (and their object) plus one message's overhead."""
    return len(raw) + MESSAGE_OVERHEAD


@dataclass
class _Stats:
    requests: int = 0
    errors: int = 0
    evictions: int = 0
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    def record(self, model: str, prompt_tokens: int, completion_tokens: int, error: str | None) -> None:
        if model not in self.by_model and len(self.by_model) >= MAX_MODELS_TRACKED:
            model = OTHER_MODEL
        self.requests += 1
        entry = self.by_model.setdefault(
            model, {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0}
        )
        entry["requests"] += 1
        entry["prompt_tokens"] += prompt_tokens
        entry["completion_tokens"] += completion_tokens
        if error:
            self.errors += 1
            entry["errors"] += 1
            self.errors_by_kind[error] = self.errors_by_kind.get(error, 0) + 1

    def export(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "evictions": self.evictions,
            "by_model": {k: dict(v) for k, v in self.by_model.items()},
            "errors_by_kind": dict(self.errors_by_kind),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 4) if self.requests else 0.0,
            "total_tokens": sum(m["prompt_tokens"] + m["completion_tokens"] for m in self.by_model.values()),
            "by_model": {k: dict(v) for k, v in self.by_model.items()},
            "errors_by_kind": dict(self.errors_by_kind),
            "evictions": self.evictions,
        }
