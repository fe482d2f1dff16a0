"""The default store: one process's conversations in Django's LocMemCache.

It calls the cache's synchronous methods directly: they do no I/O, so an async caller needs no thread
hop, and no await between read and write means an append can never interleave with another one in
this process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import caches

from core.clock import utc_now_iso
from stores.base import (
    MAX_MODELS_TRACKED,
    OTHER_MODEL,
    Conversation,
    Kind,
    astuple_shallow,
    fixed_window,
    slot_of,
    stored_id,
    trim,
)


class LocalStore:
    """One process's store on Django's LocMemCache, with an in-process recency index."""

    kind_name = "local-memory"

    def __init__(self) -> None:
        self._cache = caches["conversations"]
        self._values = caches["default"]
        # kind -> {owner/conversation id: expiry (monotonic)}, oldest write first
        self._index: dict[Kind, OrderedDict[str, float]] = {k: OrderedDict() for k in Kind}
        self._records: dict[Kind, _Records] = {k: _Records() for k in Kind}
        self._stats = _Stats()

    @staticmethod
    def _key(kind: Kind, slot: str) -> str:
        return f"{kind}:{slot}"

    def _live_index(self, kind: Kind) -> OrderedDict[str, float]:
        index = self._index[kind]
        now = time.monotonic()
        while index:
            oldest, expires = next(iter(index.items()))
            if expires > now:
                break
            index.popitem(last=False)
            self._cache.delete(self._key(kind, oldest))
        return index

    def _load(self, kind: Kind, slot: str) -> Conversation | None:
        if slot not in self._live_index(kind):
            return None
        raw = self._cache.get(self._key(kind, slot))
        if raw is None:
            self._index[kind].pop(slot, None)
            return None
        return Conversation(*raw)

    def _slots(self, kind: Kind, owner: str | None) -> list[str]:
        """The owner's conversations (every owner's for None), most recently active first."""
        index = self._live_index(kind)
        if owner is None:
            return list(reversed(index))
        prefix = f"{owner}/"
        return [slot for slot in reversed(index) if slot.startswith(prefix)]

    async def get(self, kind: Kind, conversation_id: str, *, owner: str) -> Conversation | None:
        return self._load(kind, slot_of(owner, conversation_id))

    async def append(
        self,
        kind: Kind,
        conversation_id: str,
        messages: list[dict[str, Any]],
        *,
        owner: str,
        model: str,
        tokens: int,
    ) -> Conversation:
        now = utc_now_iso()
        slot = slot_of(owner, conversation_id)
        conversation = self._load(kind, slot) or Conversation(
            id=conversation_id, created_at=now, updated_at=now, model=model, owner=owner
        )
        conversation.messages.extend(messages)
        conversation.message_count = len(conversation.messages)
        conversation.model = model
        conversation.updated_at = now
        conversation.total_tokens += tokens
        trim(conversation, settings.CONVERSATION_MAX_MESSAGES)
        ttl = settings.CONVERSATION_TTL
        # A plain tuple, not dataclasses.asdict: that deep-copies every message before pickling.
        self._cache.set(self._key(kind, slot), astuple_shallow(conversation), ttl)
        index = self._index[kind]
        index[slot] = time.monotonic() + ttl
        index.move_to_end(slot)
        while len(index) > settings.CONVERSATION_MAX:
            evicted, _ = index.popitem(last=False)
            self._cache.delete(self._key(kind, evicted))
            self._stats.evictions += 1
        return conversation

    async def page(
        self, kind: Kind, *, owner: str | None, limit: int, offset: int
    ) -> tuple[int, list[Conversation]]:
        slots = self._slots(kind, owner)
        page = [c for c in (self._load(kind, s) for s in slots[offset : offset + limit]) if c is not None]
        return len(slots), page

    async def delete(self, kind: Kind, conversation_id: str, *, owner: str) -> bool:
        slot = slot_of(owner, conversation_id)
        if self._live_index(kind).pop(slot, None) is None:
            return False
        self._cache.delete(self._key(kind, slot))
        return True

    async def clear(self, kind: Kind, *, owner: str) -> int:
        slots = self._slots(kind, owner)
        self._cache.delete_many([self._key(kind, s) for s in slots])
        index = self._index[kind]
        for slot in slots:
            del index[slot]
        return len(slots)

    async def count(self, kind: Kind) -> int:
        return len(self._live_index(kind))

    async def ping(self) -> None:
        return None

    async def record_call(
        self, model: str, *, prompt_tokens: int, completion_tokens: int, error: str | None
    ) -> None:
        self._stats.record(model, prompt_tokens, completion_tokens, error)

    async def usage(self) -> dict[str, Any]:
        return self._stats.summary()

    async def cache_get(self, key: str) -> Any:
        return self._values.get(key)

    async def cache_set(self, key: str, value: Any, ttl: int | None) -> None:
        self._values.set(key, value, ttl)

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        slot, reset = fixed_window(window)
        counter = f"{key}:{slot}"
        try:
            count = self._values.incr(counter)
        except ValueError:
            self._values.set(counter, 1, window + 1)
            count = 1
        return count, reset

    async def delete_message(self, kind: Kind, conversation_id: str, message_id: str, *, owner: str) -> bool:
        slot = slot_of(owner, conversation_id)
        conversation = self._load(kind, slot)
        if conversation is None:
            return False
        kept = [m for m in conversation.messages if stored_id(m) != message_id]
        if len(kept) == len(conversation.messages):
            return False
        conversation.messages, conversation.message_count = kept, len(kept)
        self._cache.set(self._key(kind, slot), astuple_shallow(conversation), settings.CONVERSATION_TTL)
        return True

    async def put_record(self, kind: Kind, record_id: str, record: dict[str, Any], *, owner: str) -> None:
        self._records[kind].put(slot_of(owner, record_id), orjson.dumps(record))

    async def get_records(
        self, kind: Kind, record_ids: list[str], *, owner: str
    ) -> list[dict[str, Any] | None]:
        records = self._records[kind]
        found = [records.get(slot_of(owner, record_id)) for record_id in record_ids]
        return [None if raw is None else orjson.loads(raw) for raw in found]

    async def delete_record(self, kind: Kind, record_id: str, *, owner: str) -> bool:
        return self._records[kind].delete(slot_of(owner, record_id))


class _Records:
    """One kind's records: JSON bytes by slot, oldest write first, each with its expiry (monotonic).
    Kept as bytes, so a caller's later change to a record it put or got never reaches the store."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def _prune(self) -> None:
        now = time.monotonic()
        while self._entries and next(iter(self._entries.values()))[0] <= now:
            self._entries.popitem(last=False)

    def put(self, slot: str, raw: bytes) -> None:
        self._prune()
        self._entries[slot] = (time.monotonic() + settings.CONVERSATION_TTL, raw)
        self._entries.move_to_end(slot)
        while len(self._entries) > settings.CONVERSATION_MAX:
            self._entries.popitem(last=False)

    def get(self, slot: str) -> bytes | None:
        entry = self._entries.get(slot)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def delete(self, slot: str) -> bool:
        entry = self._entries.pop(slot, None)
        return entry is not None and entry[0] > time.monotonic()


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
