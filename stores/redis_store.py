"""The shared store on Redis: every write is one atomic script or transaction, so processes
sharing one Redis never overwrite each other."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import redis.asyncio as redis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from core.auth import ANONYMOUS
from core.clock import utc_now_iso
from core.errors import StoreUnavailable
from stores.base import (
    MAX_MODELS_TRACKED,
    OTHER_MODEL,
    Conversation,
    Kind,
    fixed_window,
    slot_of,
    stored_id,
)

logger = logging.getLogger(__name__)

# KEYS: meta, msgs, index, stats, owner index. ARGV: id, now (iso), model, tokens, max messages, ttl,
# score (epoch seconds), max conversations, key base for evictions, owner, owner index base,
# messages (JSON)... The kind's index holds "owner/id" slots; each owner's index holds ids.
APPEND = """
local meta, msgs, index, stats, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ttl, score = tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (score - ttl))
redis.call('ZREMRANGEBYSCORE', mine, '-inf', '(' .. (score - ttl))
if redis.call('EXISTS', meta) == 0 then
  redis.call('DEL', msgs)
  redis.call('HSET', meta, 'id', ARGV[1], 'created_at', ARGV[2], 'total_tokens', 0, 'dropped_messages', 0,
    'owner', ARGV[10])
end
redis.call('HSET', meta, 'updated_at', ARGV[2], 'model', ARGV[3])
local total = redis.call('HINCRBY', meta, 'total_tokens', tonumber(ARGV[4]))
for i = 12, #ARGV do redis.call('RPUSH', msgs, ARGV[i]) end
local length = redis.call('LLEN', msgs)
local max_messages = tonumber(ARGV[5])
if length > max_messages then
  local excess = length - max_messages
  if excess % 2 == 1 then excess = excess + 1 end
  redis.call('LTRIM', msgs, excess, -1)
  redis.call('HINCRBY', meta, 'dropped_messages', excess)
  length = length - excess
end
redis.call('EXPIRE', meta, ttl)
redis.call('EXPIRE', msgs, ttl)
redis.call('EXPIRE', mine, ttl)
redis.call('ZADD', index, score, ARGV[10] .. '/' .. ARGV[1])
redis.call('ZADD', mine, score, ARGV[1])
local count = redis.call('ZCARD', index)
local max_conversations = tonumber(ARGV[8])
if count > max_conversations then
  local victims = redis.call('ZPOPMIN', index, count - max_conversations)
  for i = 1, #victims, 2 do
    redis.call('DEL', ARGV[9] .. victims[i] .. ':meta', ARGV[9] .. victims[i] .. ':msgs')
    local owner, id = string.match(victims[i], '^([^/]*)/(.*)$')
    redis.call('ZREM', ARGV[11] .. owner, id)
  end
  redis.call('HINCRBY', stats, 'evictions', #victims / 2)
end
return {length, total}
"""

# KEYS: the owner's index, the kind's index. ARGV: key base, owner. Deletes one owner's conversations.
CLEAR = """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  local slot = ARGV[2] .. '/' .. id
  redis.call('DEL', ARGV[1] .. slot .. ':meta', ARGV[1] .. slot .. ':msgs')
  redis.call('ZREM', KEYS[2], slot)
end
redis.call('DEL', KEYS[1])
return #ids
"""


# KEYS: totals hash, model set, errors hash. ARGV: model, prompt tokens, completion tokens, error
# kind ("" for none), most models tracked, the name the rest are counted under.
RECORD = """
local model = ARGV[1]
if redis.call('SISMEMBER', KEYS[2], model) == 0 and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  model = ARGV[6]
end
redis.call('SADD', KEYS[2], model)
local per_model = KEYS[1] .. ':model:' .. model
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('HINCRBY', per_model, 'requests', 1)
redis.call('HINCRBY', per_model, 'prompt_tokens', tonumber(ARGV[2]))
redis.call('HINCRBY', per_model, 'completion_tokens', tonumber(ARGV[3]))
if ARGV[4] ~= '' then
  redis.call('HINCRBY', KEYS[1], 'errors', 1)
  redis.call('HINCRBY', per_model, 'errors', 1)
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
end
return 1
"""

# KEYS: the record, the kind's record index. ARGV: the record (JSON), ttl, score (epoch seconds), most
# records of a kind, key base of the kind's records, the record's slot ("owner/id").
PUT_RECORD = """
local ttl, score = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (score - ttl))
redis.call('ZADD', KEYS[2], score, ARGV[6])
local count = redis.call('ZCARD', KEYS[2])
if count > tonumber(ARGV[4]) then
  local victims = redis.call('ZPOPMIN', KEYS[2], count - tonumber(ARGV[4]))
  for i = 1, #victims, 2 do redis.call('DEL', ARGV[5] .. victims[i]) end
end
return count
"""


class RedisStore:
    kind_name = "redis"

    def __init__(self, url: str, *, prefix: str = "gw:") -> None:
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        self._prefix = prefix
        self._append = self._redis.register_script(APPEND)
        self._clear = self._redis.register_script(CLEAR)
        self._record = self._redis.register_script(RECORD)
        self._put_record = self._redis.register_script(PUT_RECORD)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            logger.warning("redis store unavailable: %s", type(exc).__name__)
            raise StoreUnavailable() from None

    def _base(self, kind: Kind) -> str:
        return f"{self._prefix}conv:{kind}:"

    def _index(self, kind: Kind) -> str:
        return f"{self._prefix}index:{kind}"

    def _owner_base(self, kind: Kind) -> str:
        return f"{self._prefix}owner:{kind}:"

    async def _prune(self, index: str) -> None:
        cutoff = time.time() - settings.CONVERSATION_TTL
        await self._redis.zremrangebyscore(index, "-inf", f"({cutoff}")

    async def get(self, kind: Kind, conversation_id: str, *, owner: str) -> Conversation | None:
        base = self._base(kind) + slot_of(owner, conversation_id)
        with self._guard():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(f"{base}:meta")
                pipe.lrange(f"{base}:msgs", 0, -1)
                meta, raw_messages = await pipe.execute()
        if not meta:
            return None
        messages = [orjson.loads(m) for m in raw_messages]
        return _conversation(meta, messages, len(messages))

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
        base = self._base(kind)
        slot = slot_of(owner, conversation_id)
        now = utc_now_iso()
        with self._guard():
            length, total = await self._append(
                keys=[
                    f"{base}{slot}:meta",
                    f"{base}{slot}:msgs",
                    self._index(kind),
                    self._stats_key(),
                    self._owner_base(kind) + owner,
                ],
                args=[
                    conversation_id,
                    now,
                    model,
                    tokens,
                    settings.CONVERSATION_MAX_MESSAGES,
                    settings.CONVERSATION_TTL,
                    repr(time.time()),
                    settings.CONVERSATION_MAX,
                    base,
                    owner,
                    self._owner_base(kind),
                    *[orjson.dumps(m) for m in messages],
                ],
            )
        return Conversation(
            id=conversation_id,
            created_at=now,
            updated_at=now,
            model=model,
            total_tokens=int(total),
            messages=messages,
            message_count=int(length),
            owner=owner,
        )

    async def page(
        self, kind: Kind, *, owner: str | None, limit: int, offset: int
    ) -> tuple[int, list[Conversation]]:
        base = self._base(kind)
        index = self._index(kind) if owner is None else self._owner_base(kind) + owner
        with self._guard():
            await self._prune(index)
            total = await self._redis.zcard(index)
            found = [_text(i) for i in await self._redis.zrevrange(index, offset, offset + limit - 1)]
            slots = found if owner is None else [slot_of(owner, i) for i in found]
            async with self._redis.pipeline(transaction=False) as pipe:
                for slot in slots:
                    pipe.hgetall(f"{base}{slot}:meta")
                    pipe.lrange(f"{base}{slot}:msgs", -1, -1)
                    pipe.llen(f"{base}{slot}:msgs")
                results = await pipe.execute()
        page = []
        for n in range(len(slots)):
            meta, last, length = results[3 * n : 3 * n + 3]
            if meta:
                page.append(_conversation(meta, [orjson.loads(m) for m in last], int(length)))
        return int(total), page

    async def delete(self, kind: Kind, conversation_id: str, *, owner: str) -> bool:
        slot = slot_of(owner, conversation_id)
        base = self._base(kind) + slot
        with self._guard():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._index(kind), slot)
                pipe.zrem(self._owner_base(kind) + owner, conversation_id)
                pipe.delete(f"{base}:meta", f"{base}:msgs")
                removed, _, deleted = await pipe.execute()
        return bool(removed or deleted)

    async def clear(self, kind: Kind, *, owner: str) -> int:
        mine = self._owner_base(kind) + owner
        with self._guard():
            await self._prune(mine)
            return int(await self._clear(keys=[mine, self._index(kind)], args=[self._base(kind), owner]))

    async def count(self, kind: Kind) -> int:
        with self._guard():
            await self._prune(self._index(kind))
            return int(await self._redis.zcard(self._index(kind)))

    async def ping(self) -> None:
        with self._guard():
            await self._redis.ping()

    def _stats_key(self, suffix: str = "") -> str:
        return f"{self._prefix}stats{suffix}"

    async def record_call(
        self, model: str, *, prompt_tokens: int, completion_tokens: int, error: str | None
    ) -> None:
        with self._guard():
            await self._record(
                keys=[self._stats_key(), self._stats_key(":models"), self._stats_key(":errors")],
                args=[model, prompt_tokens, completion_tokens, error or "", MAX_MODELS_TRACKED, OTHER_MODEL],
            )

    async def usage(self) -> dict[str, Any]:
        with self._guard():
            totals = _ints(await self._redis.hgetall(self._stats_key()))
            models = sorted(_text(m) for m in await self._redis.smembers(self._stats_key(":models")))
            async with self._redis.pipeline(transaction=False) as pipe:
                for model in models:
                    pipe.hgetall(self._stats_key(f":model:{model}"))
                per_model = await pipe.execute()
            errors = _ints(await self._redis.hgetall(self._stats_key(":errors")))
        by_model = {
            model: {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, **_ints(raw)}
            for model, raw in zip(models, per_model, strict=True)
        }
        requests, failed = totals.get("requests", 0), totals.get("errors", 0)
        return {
            "requests": requests,
            "errors": failed,
            "error_rate": round(failed / requests, 4) if requests else 0.0,
            "total_tokens": sum(m["prompt_tokens"] + m["completion_tokens"] for m in by_model.values()),
            "by_model": by_model,
            "errors_by_kind": errors,
            "evictions": totals.get("evictions", 0),
        }

    async def cache_get(self, key: str) -> Any:
        with self._guard():
            raw = await self._redis.get(f"{self._prefix}cache:{key}")
        return None if raw is None else orjson.loads(raw)

    async def cache_set(self, key: str, value: Any, ttl: int | None) -> None:
        with self._guard():
            await self._redis.set(f"{self._prefix}cache:{key}", orjson.dumps(value), ex=ttl)

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        slot, reset = fixed_window(window)
        counter = f"{self._prefix}{key}:{slot}"
        with self._guard():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, window + 1)
                count, _ = await pipe.execute()
        return int(count), reset

    async def delete_message(self, kind: Kind, conversation_id: str, message_id: str, *, owner: str) -> bool:
        msgs = f"{self._base(kind)}{slot_of(owner, conversation_id)}:msgs"
        with self._guard():
            for raw in await self._redis.lrange(msgs, 0, -1):
                if stored_id(orjson.loads(raw)) == message_id:
                    # by value: whatever else was appended meanwhile, exactly this message goes
                    return bool(await self._redis.lrem(msgs, 1, _text(raw)))
        return False

    def _record_base(self, kind: Kind) -> str:
        return f"{self._prefix}record:{kind}:"

    async def put_record(self, kind: Kind, record_id: str, record: dict[str, Any], *, owner: str) -> None:
        slot = slot_of(owner, record_id)
        with self._guard():
            await self._put_record(
                keys=[self._record_base(kind) + slot, f"{self._prefix}records:{kind}"],
                args=[
                    orjson.dumps(record),
                    settings.CONVERSATION_TTL,
                    repr(time.time()),
                    settings.CONVERSATION_MAX,
                    self._record_base(kind),
                    slot,
                ],
            )

    async def get_records(
        self, kind: Kind, record_ids: list[str], *, owner: str
    ) -> list[dict[str, Any] | None]:
        if not record_ids:
            return []
        keys = [self._record_base(kind) + slot_of(owner, record_id) for record_id in record_ids]
        with self._guard():
            found = await self._redis.mget(keys)
        return [None if raw is None else orjson.loads(raw) for raw in found]

    async def delete_record(self, kind: Kind, record_id: str, *, owner: str) -> bool:
        slot = slot_of(owner, record_id)
        with self._guard():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(f"{self._prefix}records:{kind}", slot)
                pipe.delete(self._record_base(kind) + slot)
                _, deleted = await pipe.execute()
        return bool(deleted)

    async def flush(self) -> None:
        """Delete every key of this store (tests)."""
        with self._guard():
            keys = [k async for k in self._redis.scan_iter(match=f"{self._prefix}*")]
            if keys:
                await self._redis.delete(*keys)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _ints(raw: dict[Any, Any]) -> dict[str, int]:
    return {_text(k): int(v) for k, v in raw.items()}


def _conversation(meta: dict[bytes, bytes], messages: list[dict[str, Any]], count: int) -> Conversation:
    fields = {k.decode(): v.decode() for k, v in meta.items()}
    return Conversation(
        id=fields["id"],
        created_at=fields["created_at"],
        updated_at=fields.get("updated_at", fields["created_at"]),
        model=fields.get("model", ""),
        total_tokens=int(fields.get("total_tokens", 0)),
        dropped_messages=int(fields.get("dropped_messages", 0)),
        messages=messages,
        message_count=count,
        owner=fields.get("owner", ANONYMOUS),
    )
