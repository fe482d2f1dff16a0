"""The conversation stores: the protocol and value in `base`, the local store, the Redis store."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import caches

from stores.base import Conversation, ConversationStore, Kind

__all__ = ["Conversation", "ConversationStore", "Kind", "get_store", "reset_store"]

_store: ConversationStore | None = None


def get_store() -> ConversationStore:
    """The process's store: Redis when REDIS_URL is set, else local memory."""
    global _store
    if _store is None:
        if settings.REDIS_URL:
            if settings.REDIS_CLUSTER:
                from stores.redis_cluster import RedisClusterStore

                _store = RedisClusterStore(settings.REDIS_URL)
            else:
                from stores.redis_store import RedisStore

                _store = RedisStore(settings.REDIS_URL)
        else:
            from stores.local import LocalStore

            _store = LocalStore()
    return _store


def reset_store() -> None:
    """Forget every conversation and figure (tests, and nothing else, call this)."""
    global _store
    caches["default"].clear()
    _store = None
