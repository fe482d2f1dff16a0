"""What the stores count (stores.base.message_cost, MESSAGE_OVERHEAD, CONVERSATION_OVERHEAD) is never less
than what they really hold (the local store measured with tracemalloc, Redis with its own used_memory),
whatever the text is made of."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import orjson
import pytest
import redis

from gateway.turns import turn
from stores import ConversationStore, Kind
from stores.local import LocalStore
from stores.redis_store import RedisStore
from tests.conftest import RedisServer

TEXTS = {
    "ascii": "a" * 3000,
    "latin-1": "\u00e9" * 3000,
    "cjk": "\u4e2d" * 3000,
    "emoji": "\U0001f600" * 3000,
    "one emoji in ascii": "a" * 2999 + "\U0001f600",
    "quotes": '"' * 3000,
    "control characters": "\x01" * 3000,
    "short": "hi",
}
CLOSE = {"ascii", "emoji", "one emoji in ascii", "cjk"}  # counted within 25 % of what is held


async def fill(store: ConversationStore, text: str, *, conversations: int, turns: int) -> None:
    for c in range(conversations):
        for t in range(turns):
            user = f"{text}{c}-{t}"  # a new string each time, as every request's text is
            model = f"provider/model-{t % 3}"  # a new string each time, as every upstream answer's is
            messages = turn(user, "reply: " + user, model=model)
            await store.append(
                Kind.CHAT,
                f"conversation-{c:04d}",
                messages,
                owner="anonymous",
                model=model,
                tokens=9,
                quota_key=f"ip:{c % 7}",
            )
        reread = await store.get(
            Kind.CHAT, f"conversation-{c:04d}", owner="anonymous"
        )  # read back, as the API does
        orjson.dumps(reread.messages if reread else [])


@pytest.mark.parametrize("name", TEXTS)
async def test_it_never_counts_less_than_it_holds(settings: Any, name: str) -> None:
    settings.STORE_MAX_BYTES = settings.CLIENT_STORAGE_BYTES = 10**12
    store = LocalStore()
    await fill(store, "warm", conversations=1, turns=1)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await fill(store, TEXTS[name], conversations=40, turns=5)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = await store.stored_bytes() - await _warm_cost()
    print(f"\n{name}: held {held} bytes, counted {counted} ({counted / held:.2f}x)")
    assert counted >= held
    if name in CLOSE:
        assert counted <= 1.25 * held


async def _warm_cost() -> int:
    store = LocalStore()
    await fill(store, "warm", conversations=1, turns=1)
    return await store.stored_bytes()


@pytest.mark.parametrize("name", ["ascii", "emoji", "short"])
async def test_it_never_counts_less_than_redis_holds(
    settings: Any, redis_server: RedisServer, name: str
) -> None:
    """The same figures bound Redis's memory (it keeps the JSON: non-ASCII text is counted up to twice)."""
    settings.STORE_MAX_BYTES = settings.CLIENT_STORAGE_BYTES = 10**12
    store = RedisStore(redis_server.url.replace("/0", "/4"), prefix=f"cost-{len(name)}:")
    raw = redis.Redis.from_url(redis_server.url)
    try:
        await store.flush()
        before = int(raw.info("memory")["used_memory"])
        await fill(store, TEXTS[name], conversations=100, turns=5)
        held = int(raw.info("memory")["used_memory"]) - before
        counted = await store.stored_bytes()
        print(f"\nredis, {name}: held {held} bytes, counted {counted} ({counted / held:.2f}x)")
        assert counted >= held
    finally:
        await store.flush()
        await store.aclose()
        raw.close()
