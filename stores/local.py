"""The default store: one process's conversations in Django's LocMemCache.

It calls the cache's synchronous methods directly: they do no I/O, so an async caller needs no thread
hop, and no await between read and write means an append can never interleave with another one in
this process.

For the snapshot writer (stores/snapshot.py) it counts its changes, hands over its index and figures in
one cheap step on the loop (`contents`), lets any thread read one whole conversation (`read`), and
takes conversations and figures back at start-up (`restore`, `restore_usage`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

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
    trim,
)


class LocalStore:
    """One process's store on Django's LocMemCache, with an in-process recency index."""

    kind_name = "local-memory"

    def __init__(self) -> None:
        self._cache = caches["conversations"]
        self._values = caches["default"]
        # kind -> {conversation id: expiry (monotonic)}, oldest write first
        self._index: dict[Kind, OrderedDict[str, float]] = {k: OrderedDict() for k in Kind}
        self._stats = _Stats()
        self.changes = 0  # bumped by every write; the snapshot writer saves only when it moved

    @staticmethod
    def _key(kind: Kind, conversation_id: str) -> str:
        return f"{kind}:{conversation_id}"

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

    def _load(self, kind: Kind, conversation_id: str) -> Conversation | None:
        if conversation_id not in self._live_index(kind):
            return None
        raw = self._cache.get(self._key(kind, conversation_id))
        if raw is None:
            self._index[kind].pop(conversation_id, None)
            return None
        return Conversation(*raw)

    async def get(self, kind: Kind, conversation_id: str) -> Conversation | None:
        return self._load(kind, conversation_id)

    async def append(
        self, kind: Kind, conversation_id: str, messages: list[dict[str, Any]], *, model: str, tokens: int
    ) -> Conversation:
        now = utc_now_iso()
        self.changes += 1
        conversation = self._load(kind, conversation_id) or Conversation(
            id=conversation_id, created_at=now, updated_at=now, model=model
        )
        conversation.messages.extend(messages)
        conversation.message_count = len(conversation.messages)
        conversation.model = model
        conversation.updated_at = now
        conversation.total_tokens += tokens
        trim(conversation, settings.CONVERSATION_MAX_MESSAGES)
        ttl = settings.CONVERSATION_TTL
        # A plain tuple, not dataclasses.asdict: that deep-copies every message before pickling.
        self._cache.set(self._key(kind, conversation_id), astuple_shallow(conversation), ttl)
        index = self._index[kind]
        index[conversation_id] = time.monotonic() + ttl
        index.move_to_end(conversation_id)
        while len(index) > settings.CONVERSATION_MAX:
            evicted, _ = index.popitem(last=False)
            self._cache.delete(self._key(kind, evicted))
            self._stats.evictions += 1
        return conversation

    async def page(self, kind: Kind, *, limit: int, offset: int) -> tuple[int, list[Conversation]]:
        ids = list(reversed(self._live_index(kind)))
        page = [c for c in (self._load(kind, i) for i in ids[offset : offset + limit]) if c is not None]
        return len(ids), page

    async def delete(self, kind: Kind, conversation_id: str) -> bool:
        if self._live_index(kind).pop(conversation_id, None) is None:
            return False
        self._cache.delete(self._key(kind, conversation_id))
        self.changes += 1
        return True

    async def clear(self, kind: Kind) -> int:
        index = self._live_index(kind)
        removed = len(index)
        self._cache.delete_many([self._key(kind, i) for i in index])
        index.clear()
        if removed:
            self.changes += 1
        return removed

    async def count(self, kind: Kind) -> int:
        return len(self._live_index(kind))

    async def ping(self) -> None:
        return None

    async def record_call(
        self, model: str, *, prompt_tokens: int, completion_tokens: int, error: str | None
    ) -> None:
        self.changes += 1
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

    def contents(self) -> LocalContents:
        """Every conversation's id and expiry, least recently active first, and the usage figures: a
        few C-level copies, cheap enough for the event loop (the conversations are read by `read`)."""
        return LocalContents(
            changes=self.changes,
            taken_at=utc_now_iso(),
            wall_minus_monotonic=time.time() - time.monotonic(),
            index={kind: list(index.items()) for kind, index in self._index.items()},
            usage=self._stats.export(),
        )

    def read(self, kind: Kind, conversation_id: str) -> Conversation | None:
        """One conversation, whole (the cache's lock makes each read atomic); safe from any thread."""
        raw = self._cache.get(self._key(kind, conversation_id))
        return None if raw is None else Conversation(*raw)

    def restore(self, kind: Kind, conversation: Conversation, expires_in: float) -> int:
        """Put back one saved conversation (start-up, before serving), least recently active first; over
        CONVERSATION_MAX the oldest go. How many went."""
        self._cache.set(self._key(kind, conversation.id), astuple_shallow(conversation), expires_in)
        index = self._index[kind]
        index[conversation.id] = time.monotonic() + expires_in
        index.move_to_end(conversation.id)
        over = 0
        while len(index) > settings.CONVERSATION_MAX:
            oldest, _ = index.popitem(last=False)
            self._cache.delete(self._key(kind, oldest))
            over += 1
        return over

    def restore_usage(self, usage: dict[str, Any]) -> None:
        """Put back saved usage figures (the shape `contents` gives)."""
        self._stats = _Stats(
            requests=usage["requests"],
            errors=usage["errors"],
            evictions=usage["evictions"],
            by_model={k: dict(v) for k, v in usage["by_model"].items()},
            errors_by_kind=dict(usage["errors_by_kind"]),
        )


@dataclass(frozen=True)
class LocalContents:
    """What the loop hands the snapshot writer."""

    changes: int
    taken_at: str
    wall_minus_monotonic: float  # add to a monotonic expiry for wall-clock seconds
    index: dict[Kind, list[tuple[str, float]]]  # (id, monotonic expiry), least recently active first
    usage: dict[str, Any]


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
