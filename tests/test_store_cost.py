"""What the stores count (stores.base.message_cost, MESSAGE_OVERHEAD, CONVERSATION_OVERHEAD) is never less
than what they really hold (the local store measured with tracemalloc, Redis with its own used_memory),
whatever the text is made of."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Awaitable, Callable
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


RECORDS: dict[str, dict[str, Any]] = {  # a stored response's record, as small and as large as they come
    "small": {"id": "resp_x", "output_text": "hi"},
    "typical": {"id": "resp_x", "output_text": "a" * 1400, "usage": {"input_tokens": 9}},
    "large": {"id": "resp_x", "output_text": "a" * 20_000},
}


async def _held_after(step: Callable[[], Awaitable[Any]]) -> int:
    """Bytes held after `step` (traced by tracemalloc), beyond what was held before it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await step()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", RECORDS)
async def test_a_kept_record_is_never_counted_less_than_it_holds(settings: Any, name: str) -> None:
    """orjson leaves its output in a buffer of 4 KiB or more, whatever its length (orjson 3.12 on):
    a record kept as it came out of orjson held several times what was counted."""
    settings.STORE_MAX_BYTES = settings.CLIENT_STORAGE_BYTES = 10**12
    store = LocalStore()

    async def keep() -> None:
        for i in range(200):
            await store.put_record(Kind.RESPONSE, f"resp_{i}", RECORDS[name], owner="a", quota_key="ip:1")

    held = await _held_after(keep)
    counted = store._record_bytes()  # what the records count against STORE_MAX_BYTES
    print(f"\nrecords, {name}: held {held} bytes, counted {counted} ({counted / held:.2f}x)")
    assert counted >= held


async def test_a_record_brought_back_from_a_snapshot_is_never_counted_less_than_it_holds(
    settings: Any, tmp_path: Any
) -> None:
    from stores import snapshot

    settings.STORE_MAX_BYTES = settings.CLIENT_STORAGE_BYTES = 10**12
    source = LocalStore()
    for i in range(200):
        await source.put_record(Kind.RESPONSE, f"resp_{i}", RECORDS["typical"], owner="anonymous")
    snapshot.write_snapshot(source, source.contents(), tmp_path / "s")
    restored = LocalStore()

    async def bring_back() -> None:
        snapshot.load_snapshot(restored, tmp_path / "s", time.time())

    held = await _held_after(bring_back)
    counted = restored._record_bytes()
    print(f"\nrestored records: held {held} bytes, counted {counted} ({counted / held:.2f}x)")
    assert counted >= held


async def test_a_call_s_body_holds_its_length_while_the_call_lasts() -> None:
    """The body sent upstream is held until the answer ends (a stream's whole life): 1,000 open streams
    held 4 MiB of orjson's spare buffer."""
    from upstream import UpstreamCall

    call = UpstreamCall(
        messages=[{"role": "user", "content": "hi"}],
        model="m",
        max_tokens=None,
        temperature=None,
        api_key="k",
    )
    bodies: list[bytes] = []

    async def open_calls() -> None:
        bodies.extend(call.payload("m", stream=True) for _ in range(200))

    held = await _held_after(open_calls)
    assert held / 200 < 4 * len(bodies[0]) + 200
