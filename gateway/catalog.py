"""The model list: the upstream's own (cached 10 minutes, last good copy kept), else a built-in one."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from django.conf import settings

import upstream
from core.errors import ServiceError
from stores import get_store

logger = logging.getLogger(__name__)

FRESH_SECONDS = 600
RETRY_AFTER_FAILURE_SECONDS = 30

BUILTIN_MODELS: list[dict[str, Any]] = [
    {"id": "openai/gpt-4o-mini", "name": "GPT-4o Mini", "description": "Fast and efficient."},
    {"id": "openai/gpt-4o", "name": "GPT-4o", "description": "OpenAI's most capable model."},
    {
        "id": "anthropic/claude-3.5-sonnet",
        "name": "Claude 3.5 Sonnet",
        "description": "Excellent for coding.",
    },
    {"id": "anthropic/claude-3-haiku", "name": "Claude 3 Haiku", "description": "Fast and efficient."},
    {"id": "google/gemini-pro", "name": "Gemini Pro", "description": "Google's general model."},
    {
        "id": "meta-llama/llama-3.1-8b-instruct",
        "name": "Llama 3.1 8B Instruct",
        "description": "Small open model.",
    },
]
BUILTIN_RECOMMENDED = "openai/gpt-4o-mini"

_refresh_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _lock() -> asyncio.Lock:
    """One refresh at a time per event loop, so a cold cache costs one upstream call."""
    return _refresh_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    context = raw.get("context_length")
    return {
        "id": raw["id"],
        "name": raw.get("name") if isinstance(raw.get("name"), str) else raw["id"],
        "description": raw.get("description") if isinstance(raw.get("description"), str) else "",
        "context_length": context if isinstance(context, int) else None,
        "created": raw["created"] if isinstance(raw.get("created"), int) else 0,
    }


def _mark_recommended(models: list[dict[str, Any]], recommended: str) -> list[dict[str, Any]]:
    return [{**m, "recommended": m["id"] == recommended} for m in models]


async def available_models() -> tuple[list[dict[str, Any]], str]:
    """(models, source) where source is upstream, stale or builtin."""
    store = get_store()
    fresh = await store.cache_get("models:fresh")
    if fresh is None and not await store.cache_get("models:failed"):
        async with _lock():
            fresh = await store.cache_get("models:fresh")
            if fresh is None:
                fresh = await _refresh()
    if fresh is not None:
        return _mark_recommended(fresh, settings.LLM_MODEL), "upstream"
    last = await store.cache_get("models:last")
    if last is not None:
        return _mark_recommended(last, settings.LLM_MODEL), "stale"
    return _mark_recommended(BUILTIN_MODELS, BUILTIN_RECOMMENDED), "builtin"


async def _refresh() -> list[dict[str, Any]] | None:
    store = get_store()
    try:
        raw = await upstream.list_models(api_key=settings.LLM_API_KEY)
    except ServiceError as exc:
        logger.warning("model list unavailable from upstream (%s); using fallback", exc.code)
        await store.cache_set("models:failed", True, RETRY_AFTER_FAILURE_SECONDS)
        return None
    if not raw:
        await store.cache_set("models:failed", True, RETRY_AFTER_FAILURE_SECONDS)
        return None
    models = [_normalise(m) for m in raw]
    await store.cache_set("models:fresh", models, FRESH_SECONDS)
    await store.cache_set("models:last", models, None)
    return models
