"""The store on a Redis Cluster (REDIS_CLUSTER=true): the single-node store's operations, with keys
spread over the cluster by owner and every script's keys in one slot."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
import redis.asyncio as redis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.exceptions import AskError, ClusterError, RedisClusterException, TryAgainError

from stores.base import (
    CONVERSATION_OVERHEAD,
    Admission,
    Count,
    Kind,
    RecordWrite,
    TurnWrite,
    conversation_cap,
    encoded_cost,
    slot_of,
    title_for,
)
from stores.redis_store import (
    DROP_MESSAGES,
    RECORD,
    RECORDS,
    SWAP_LAST_TURN,
    TALLY,
    TRIM_TURNS,
    Operation,
    RedisStore,
    _admission,
    _function,
    _text,
    batch_script,
)
from stores.redis_wire import Unreachable, WireClient

# On a cluster (REDIS_CLUSTER) the keys of one owner's conversations and records carry the owner's hash
# tag, a quota's keys the quota key's, each counter its own key, and the shared accounting (`lru`,
# `sizes`, `owners`, `bytes`, `stats*`, `index:<kind>`, `records:<kind>`) the tag `{gw}`. Each step
# below runs on one slot, with every key it touches in its KEYS (scripts that reach into another slot
# are refused by a cluster): a turn is written on its owner's slot (exactly, as on one node), then the
# accounting and the quota are brought up to date, then the conversations they evicted are deleted on
# their owners' slots (RedisStore._settle). Every step is safe to run twice.
CLUSTER_LIBRARY = (
    TRIM_TURNS
    + SWAP_LAST_TURN
    + DROP_MESSAGES
    + RECORDS
    + "local KINDS = {"
    + ", ".join(f"'{kind}'" for kind in Kind)
    + "}\n"
    + """
local function split_member(member)
  local sep = string.find(member, ':', 1, true)
  return string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
end

-- the shared accounting's keys: lru, sizes, owners, bytes, stats, versions (of the conversation each size
-- was counted at), then one index per kind (KINDS), then every kind's records' bytes
local function globals(K)
  local g = {lru = K[1], sizes = K[2], owners = K[3], bytes = K[4], stats = K[5], versions = K[6], index = {}}
  for i, kind in ipairs(KINDS) do g.index[kind] = K[6 + i] end
  g.records = K[7 + #KINDS]  -- every kind's records' bytes (RECORDS)
  return g
end

-- takes one conversation out of the shared accounting: whether it was there, and its quota key ('')
local function unaccount(g, member)
  local bytes = redis.call('HGET', g.sizes, member)
  local quota = redis.call('HGET', g.owners, member) or ''
  local counted = redis.call('HGET', g.versions, member) or ''
  local existed = redis.call('ZREM', g.lru, member)
  if bytes then
    existed = 1
    redis.call('HDEL', g.sizes, member)
    redis.call('DECRBY', g.bytes, tonumber(bytes))
  end
  redis.call('HDEL', g.owners, member)
  redis.call('HDEL', g.versions, member)
  local kind, slot = split_member(member)
  if g.index[kind] then existed = existed + redis.call('ZREM', g.index[kind], slot) end
  return existed > 0, quota, counted
end

local function expire_idle(g, cutoff, keep, victims)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', g.lru, '-inf', '(' .. cutoff)) do
    if member ~= keep then
      local _, quota, counted = unaccount(g, member)
      victims[#victims + 1] = {member, quota, counted}
    end
  end
end

-- a turn replayed (its id seen before): its conversation's size now (false when it is gone), so that the
-- accounting after it runs again (it may not have, if the first attempt broke off)
local function sized(prior, meta)
  if prior then prior[4], prior[5] = redis.call('HGET', meta, 'size'), redis.call('HGET', meta, 'version') end
  return prior
end

local function oldest_but(zset, member)
  local two = redis.call('ZRANGE', zset, 0, 1)
  if two[1] ~= member then return two[1] end
  return two[2]
end

-- K: meta, msgs, costs, the owner's index. A: 1 now (iso), 2 model, 3 tokens, 4 max messages, 5 ttl,
-- 6 score, 7 the conversation's cap (bytes), 8 owner, 9 id, 10 title, 11 the conversation's own
-- overhead, 12 n, then n messages (JSON), then their n costs. The conversation's size is kept in its
-- meta. Answers {length, tokens, 0, size}.
local function conv_append(K, A)
  local meta, msgs, costs, mine = K[1], K[2], K[3], K[4]
  local ttl, score, cap, n = tonumber(A[5]), tonumber(A[6]), tonumber(A[7]), tonumber(A[12])
  local size, tokens = 0, tonumber(A[3])
  if redis.call('EXISTS', meta) == 0 then
    redis.call('DEL', msgs, costs)
    redis.call('HSET', meta, 'id', A[9], 'created_at', A[1], 'total_tokens', tokens, 'dropped_messages', 0,
      'owner', A[8], 'title', A[10], 'version', math.floor(tonumber(A[6])) * 1000000,
      'updated_at', A[1], 'model', A[2], 'cap', cap)
    size = tonumber(A[11])
  else
    size = tonumber(redis.call('HGET', meta, 'size') or A[11])
    redis.call('HSET', meta, 'updated_at', A[1], 'model', A[2], 'cap', cap)
    tokens = redis.call('HINCRBY', meta, 'total_tokens', tokens)
  end
  local length = push_all(msgs, A, 12, n)
  push_all(costs, A, 12 + n, n)
  for i = 1, n do size = size + tonumber(A[12 + n + i]) end
  length, size = trim_turns(meta, msgs, costs, n, length, tonumber(A[4]), size, cap)
  redis.call('HSET', meta, 'size', size)
  local version = string.format('%d', redis.call('HINCRBY', meta, 'version', 1))
  redis.call('ZADD', mine, score, A[8] .. '/' .. A[9])
  for _, key in ipairs({meta, msgs, costs, mine}) do redis.call('EXPIRE', key, ttl) end
  return {length, tokens, 0, size, version}
end

-- K: meta, msgs, costs, the owner's index. A: 1 slot, 2 now (iso), 3 model, 4 tokens, 5 ttl, 6 score,
-- 7 title, 8 max messages, 9 the store's bound (the cap of a conversation that has none kept: its last
-- append keeps its own, its client's quota if smaller, in its meta), 10 n, then n messages, then
-- their n costs. REPLACE on the owner's slot, its bounds kept: {length, tokens, 0, size}, or false when
-- there is no such conversation.
local function conv_replace(K, A)
  local meta, msgs, costs = K[1], K[2], K[3]
  if redis.call('EXISTS', meta) == 0 then return false end
  local size, total = swap_last_turn(
    meta, msgs, costs, tonumber(redis.call('HGET', meta, 'size') or '0'), A[7], A, 10, tonumber(A[4]))
  local _
  _, size = trim_turns(meta, msgs, costs, tonumber(A[10]), redis.call('LLEN', msgs), tonumber(A[8]), size,
    tonumber(redis.call('HGET', meta, 'cap') or A[9]))
  redis.call('HSET', meta, 'updated_at', A[2], 'model', A[3], 'total_tokens', total, 'size', size)
  for _, key in ipairs({meta, msgs, costs, K[4]}) do redis.call('EXPIRE', key, tonumber(A[5])) end
  redis.call('ZADD', K[4], tonumber(A[6]), A[1])
  local version = string.format('%d', redis.call('HINCRBY', meta, 'version', 1))
  return {redis.call('LLEN', msgs), total, 0, size, version}
end

-- K: meta, msgs, costs. A: the messages (their JSON, exactly). {1, the conversation's size} or {0}.
local function conv_delete_message(K, A)
  local found, cost = drop_messages(K[2], K[3], A)
  if found == 0 then return {0} end
  local version = string.format('%d', redis.call('HINCRBY', K[1], 'version', 1))
  return {1, redis.call('HINCRBY', K[1], 'size', -cost), version}
end

-- K: the owner's index of one kind, then meta, msgs and costs of each conversation. A: for each, its
-- slot and the version its eviction counted ('' for a delete, which always goes). Deletes them: how
-- many there were. A conversation written since the version its eviction counted stays: that write's
-- own accounting (a step still to come) counts it again.
local function conv_forget(K, A)
  local existed = 0
  for i = 1, #A / 2 do
    local slot, counted, meta = A[2 * i - 1], A[2 * i], K[3 * i - 1]
    local now = redis.call('HGET', meta, 'version')
    if counted == '' or not now or tonumber(now) <= tonumber(counted) then
      local n = redis.call('DEL', meta, K[3 * i], K[3 * i + 1]) + redis.call('ZREM', K[1], slot)
      if n > 0 then existed = existed + 1 end
    end
  end
  return existed
end

-- whether a conversation's size at `version` is older than the one a hash of versions has counted
local function stale(versions, member, version)
  local known = tonumber(redis.call('HGET', versions, member) or '0')
  if version < known then return true end
  redis.call('HSET', versions, member, version)
  return false
end

-- K: globals. A: 1 member, 2 size, 3 score, 4 quota key ('' none, '=' the one it has), 5 the store's
-- bound, 6 most conversations of a kind (0: keep no bound), 7 cutoff (idle before it: forgotten),
-- 8 the conversation's version. Brings the shared accounting up to date with one conversation: {its
-- quota key before, victims, its quota key now, 0}, each victim {member, its quota key}, taken out of
-- the accounting here. A version older than the one counted (two writes of one conversation reaching
-- here out of order) changes nothing of it: {'', victims, its quota key now, 1}.
local function account(K, A)
  local g = globals(K)
  local member, size, score = A[1], tonumber(A[2]), tonumber(A[3])
  local store_max, most = tonumber(A[5]), tonumber(A[6])
  local kind, slot = split_member(member)
  local victims = {}
  expire_idle(g, tonumber(A[7]), member, victims)
  local prior = redis.call('HGET', g.owners, member) or ''
  if stale(g.versions, member, tonumber(A[8])) then return {'', victims, prior, 1} end
  local old = tonumber(redis.call('HGET', g.sizes, member) or '0')
  redis.call('HSET', g.sizes, member, size)
  redis.call('INCRBY', g.bytes, size - old)
  redis.call('ZADD', g.lru, score, member)
  redis.call('ZADD', g.index[kind], score, slot)
  local quota = A[4]
  if quota == '=' then quota = prior end
  if quota == '' then
    redis.call('HDEL', g.owners, member)
  else
    redis.call('HSET', g.owners, member, quota)
  end
  local evicted = 0
  if most > 0 then
    -- the room the records kept leave (they give way only to records: see RECORDS); when that is too
    -- little, the expired ones leave the counts first (only a record's write sweeps them otherwise).
    -- K after the globals: each kind's RECORDS keys 1-6, in RECORD_KINDS' order.
    local records = tonumber(redis.call('GET', g.records)) or 0
    if records > 0 and (tonumber(redis.call('GET', g.bytes)) or 0) > store_max - records then
      local per_kind = {}
      for i = 1, #RECORD_KINDS do
        local at = 7 + #KINDS + 6 * (i - 1)
        per_kind[i] = {K[at + 1], K[at + 2], K[at + 3], K[at + 4], K[at + 5], K[at + 6], g.records, g.bytes}
      end
      sweep_records(per_kind, tonumber(A[7]))
      records = tonumber(redis.call('GET', g.records)) or 0
    end
    local room = store_max - records
    while (tonumber(redis.call('GET', g.bytes)) or 0) > room do
      local victim = oldest_but(g.lru, member)
      if not victim then break end
      local _, q, counted = unaccount(g, victim)
      victims[#victims + 1] = {victim, q, counted}
      evicted = evicted + 1
    end
    while redis.call('ZCARD', g.index[kind]) > most do
      local victim = oldest_but(g.index[kind], slot)
      if not victim then break end
      local _, q, counted = unaccount(g, kind .. ':' .. victim)
      victims[#victims + 1] = {kind .. ':' .. victim, q, counted}
      evicted = evicted + 1
    end
  end
  if evicted > 0 then redis.call('HINCRBY', g.stats, 'evictions', evicted) end
  return {prior, victims, quota, 0}
end

-- K: globals. A: cutoff. Forgets every conversation idle before it: the victims, as account's.
local function expire_all(K, A)
  local victims = {}
  expire_idle(globals(K), tonumber(A[1]), '', victims)
  return victims
end

-- K: globals. A: 1 '1' to count them as evictions, then members. Takes them out of the accounting:
-- {how many were there, their quota keys ('' none), in order}.
local function unaccount_all(K, A)
  local g = globals(K)
  local existed, quotas = 0, {}
  for i = 2, #A do
    local was, quota = unaccount(g, A[i])
    if was then existed = existed + 1 end
    quotas[#quotas + 1] = quota
  end
  if A[1] == '1' and existed > 0 then redis.call('HINCRBY', g.stats, 'evictions', existed) end
  return {existed, quotas}
end

-- K: globals. A: member, its new size, its version. The conversation's quota key ('' none).
local function resize(K, A)
  local g = globals(K)
  local old = redis.call('HGET', g.sizes, A[1])
  if not old or stale(g.versions, A[1], tonumber(A[3])) then return '' end
  redis.call('HSET', g.sizes, A[1], A[2])
  redis.call('INCRBY', g.bytes, tonumber(A[2]) - tonumber(old))
  return redis.call('HGET', g.owners, A[1]) or ''
end

-- One quota key's keys: its bytes, lru (members by last write), sizes (member -> size) and versions.
local function quota_forget(K, member)
  local bytes = redis.call('HGET', K[3], member)
  local counted = redis.call('HGET', K[4], member) or ''
  redis.call('ZREM', K[2], member)
  redis.call('HDEL', K[4], member)
  if bytes then
    redis.call('HDEL', K[3], member)
    if redis.call('DECRBY', K[1], tonumber(bytes)) <= 0 then redis.call('DEL', K[1]) end
  end
  return counted
end

-- K: the quota's keys. A: 1 member, 2 size, 3 score (0: not touched), 4 the quota (0: none), 5 ttl,
-- 6 the conversation's version. Counts one conversation against a quota: its own oldest others
-- beyond it go (answered as {member, the version the quota had counted}, taken out of the quota here).
local function quota_put(K, A)
  local member, size = A[1], tonumber(A[2])
  if stale(K[4], member, tonumber(A[6])) then return {} end
  local old = tonumber(redis.call('HGET', K[3], member) or '0')
  redis.call('HSET', K[3], member, size)
  redis.call('INCRBY', K[1], size - old)
  if tonumber(A[3]) > 0 then redis.call('ZADD', K[2], tonumber(A[3]), member) end
  local victims, most = {}, tonumber(A[4])
  if most > 0 then
    while (tonumber(redis.call('GET', K[1])) or 0) > most do
      local victim = oldest_but(K[2], member)
      if not victim then break end
      victims[#victims + 1] = {victim, quota_forget(K, victim)}
    end
  end
  for i = 1, 4 do redis.call('EXPIRE', K[i], tonumber(A[5])) end
  return victims
end

-- K: the quota's keys. A: members. Takes them out of the quota.
local function quota_drop(K, A)
  for _, member in ipairs(A) do quota_forget(K, member) end
  return #A
end

-- K: the record, its score's key. A: the record (JSON), ttl, the score index_record counts it at.
local function record_set(K, A)
  redis.call('SET', K[1], A[1], 'EX', tonumber(A[2]))
  redis.call('SET', K[2], A[3], 'EX', tonumber(A[2]))
  return 1
end

-- K: pairs of a record and its score's key. A: the score each was evicted at. Deletes each record not
-- written again since (one written before its score was kept goes too). Answers how many went.
local function record_drop(K, A)
  local n = 0
  for i, score in ipairs(A) do
    local kept = redis.call('GET', K[2 * i])
    if not kept or tonumber(kept) == tonumber(score) then
      n = n + redis.call('DEL', K[2 * i - 1], K[2 * i])
    end
  end
  return n
end

"""
)


CLUSTER_BATCH = batch_script(
    CLUSTER_LIBRARY + _function("record_call", RECORD) + _function("tally", TALLY),
    """  conv_append = function(K, A) return sized(seen(K[5]), K[1]) or once(K[5], conv_append(K, A)) end,
  conv_replace = function(K, A) return sized(seen(K[5]), K[1]) or once(K[5], conv_replace(K, A)) end,
  conv_delete_message = conv_delete_message,
  conv_forget = conv_forget,
  account = account,
  expire = expire_all,
  unaccount = unaccount_all,
  resize = resize,
  quota_put = quota_put,
  quota_drop = quota_drop,
  record_set = record_set,
  record_drop = record_drop,
  index_record = function(K, A) return {index_record(K, A)} end,
  unindex_record = function(K, A) return (unindex_record(K, A[1])) end,
  record = record_call,
  tally = tally,""",
)


def hash_tag(kind: str, name: str) -> str:
    """A hash tag for one owner's or quota key's keys: the name itself, or (a name that could end or
    open a tag early) its digest. Owner ids and quota keys never hold braces today."""
    if "{" in name or "}" in name:
        name = "#" + hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"{{{kind}:{name}}}"


# A conversation taken out of the shared accounting: "<kind>:<slot>", its quota key, and the version the
# accounting had counted ("" when it goes whatever its version: a delete).
Victim = tuple[str, str, str]
Forgotten = tuple[str, str]  # "<kind>:<slot>" and the version counted when it was evicted ("": a delete)


class RedisClusterStore(RedisStore):
    """Keys: `gw:{o:<owner>}:...` for an owner's conversations (`conv:<kind>:<owner>/<id>:meta|msgs|
    costs`), index (`mine:<kind>:<owner>`), records (each with its `:score`) and turn ids; `gw:{q:<quota
    key>}:quota:<quota key>:bytes|lru|sizes|versions` for a client's storage quota;
    `gw:{c:<counter>:<window>}` for each rate-limit and budget counter; `gw:{gw}:...` for what every
    owner shares (`index:<kind>`, `lru`, `sizes`, `owners`, `bytes`, `versions`, `stats*`,
    `records:<kind>`). A write runs a script per slot it touches, slots apart at once; what crosses slots
    (the store's bounds, the quotas) follows in a second step, and the conversations and records it
    evicts are deleted in a third (each only if not written since it was counted)."""

    batch_source = CLUSTER_BATCH

    def _connect(self, url: str, retry: Retry) -> Any:
        self._gate = asyncio.Semaphore(settings.REDIS_MAX_CONNECTIONS)
        self._url = url
        self._wires: dict[str, WireClient] = {}
        return redis.RedisCluster.from_url(
            url,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            socket_timeout=settings.REDIS_TIMEOUT,
            socket_connect_timeout=1.0,
            retry=retry,
        )

    async def _run(self, script: Any, *, keys: list[Any], args: list[Any]) -> Any:
        """On the node serving the keys' slot, down that node's own pipelined connection (as on one
        Redis: redis-py's cluster client spent about 0.4 ms of the worker's CPU a script call). redis-py's
        client takes the call when its slot map is not known yet or turns out stale (it follows MOVED
        and ASK, waits out TRYAGAIN and CLUSTERDOWN, and learns the new map, which the next call here
        reads) or when the node cannot be reached (nothing was sent: redis-py finds the node that took
        its place)."""
        wire = self._wire_for(keys[0])
        if wire is not None:
            try:
                return await wire.evalsha(script, keys, args)
            except (AskError, TryAgainError, ClusterError, Unreachable):  # AskError: MOVED too
                pass
        return await self._run_pooled(script, keys=keys, args=args)

    def _wire_for(self, key: str) -> WireClient | None:
        """The pipelined connection to the node redis-py's slot map names for `key` (None: no map yet)."""
        try:
            node = self._redis.nodes_manager.get_node_from_slot(self._redis.keyslot(key))
        except (KeyError, RedisClusterException):
            return None
        wire = self._wires.get(node.name)
        if wire is None:
            address = (node.host, int(node.port))
            wire = WireClient(self._url, timeout=settings.REDIS_TIMEOUT, address=address)
            self._wires[node.name] = wire
        return wire

    async def aclose(self) -> None:
        for wire in self._wires.values():
            wire.close()
        await super().aclose()

    def _shared(self, name: str) -> str:
        return f"{self._prefix}{{gw}}:{name}"

    def _owned(self, owner: str, name: str) -> str:
        return f"{self._prefix}{hash_tag('o', owner)}:{name}"

    def _counter(self, key: str, window: int) -> str:
        return f"{self._prefix}{hash_tag('c', f'{key}:{window}')}"

    def _quota(self, quota_key: str, part: str) -> str:
        return f"{self._prefix}{hash_tag('q', quota_key)}:quota:{quota_key}:{part}"

    def _quota_keys(self, quota_key: str) -> list[Any]:
        return [self._quota(quota_key, part) for part in ("bytes", "lru", "sizes", "versions")]

    def _globals(self) -> list[Any]:
        names = ["lru", "sizes", "owners", "bytes", "stats", "versions", *(f"index:{kind}" for kind in Kind)]
        names.append("records:bytes")
        return [self._shared(name) for name in names]

    async def _batch(self, operations: list[Operation]) -> list[Any]:
        """One BATCH per slot the operations touch, all at once: each is atomic and safe to send twice,
        on its own slot (a cluster runs a script on one slot only)."""
        groups: dict[int, list[int]] = defaultdict(list)
        for n, (_, keys, _) in enumerate(operations):
            groups[self._redis.keyslot(keys[0])].append(n)
        batches = []
        for members in groups.values():
            first = operations[members[0]][1][0]
            tag = first[first.index("{") : first.index("}") + 1]
            batch = [operations[n] for n in members]
            batches.append(self._batch_on(f"{self._prefix}{tag}:batch:{uuid.uuid4().hex}", batch))
        results: list[Any] = [None] * len(operations)
        async with self._guard(writing=True):
            answers = await asyncio.gather(*batches)
        for members, answer in zip(groups.values(), answers, strict=True):
            for n, result in zip(members, answer, strict=True):
                results[n] = result
        return results

    def _forget_operations(self, members: Sequence[Forgotten]) -> list[Operation]:
        """Delete these conversations' keys and index entries, one operation per owner and kind; one
        evicted at a version older than its own (written meanwhile) stays."""
        by_index: dict[tuple[Kind, str], list[tuple[str, str]]] = defaultdict(list)
        for member, counted in members:
            kind, _, slot = member.partition(":")
            by_index[(Kind(kind), slot.partition("/")[0])].append((slot, counted))
        operations: list[Operation] = []
        for (kind, owner), slots in by_index.items():
            keys = [self._mine(kind, owner)]
            args: list[Any] = []
            for slot, counted in slots:
                base = self._at(kind, slot)
                keys += [f"{base}:meta", f"{base}:msgs", f"{base}:costs"]
                args += [slot, counted]
            operations.append(("conv_forget", keys, args))
        return operations

    async def _settle(
        self,
        dropped: list[Victim],
        evicted: Sequence[Forgotten] = (),
        moved: tuple[str, str] | None = None,
    ) -> None:
        """The last step of a write that crossed slots: each conversation `dropped` from the shared
        accounting leaves its quota, each one `evicted` by a quota leaves the shared accounting, the
        keys of both go; a conversation `moved` to another quota key leaves its former one."""
        by_quota: dict[str, list[str]] = defaultdict(list)
        for member, quota in [*((m, q) for m, q, _ in dropped), *([moved] if moved else [])]:
            if quota:
                by_quota[quota].append(member)
        operations: list[Operation] = [
            ("quota_drop", self._quota_keys(quota), members) for quota, members in by_quota.items()
        ]
        if evicted:
            operations.append(("unaccount", self._globals(), ["1", *(member for member, _ in evicted)]))
        operations += self._forget_operations(
            [(member, counted) for member, _, counted in dropped] + list(evicted)
        )
        if operations:
            await self._batch(operations)

    async def _prune(self) -> None:
        cutoff = repr(time.time() - settings.CONVERSATION_TTL)
        [victims] = await self._batch([("expire", self._globals(), [cutoff])])
        await self._settle(_victims(victims))

    async def admit(
        self,
        counts: list[Count],
        *,
        conversation: tuple[Kind, str, str] | None = None,
        records: tuple[Kind, list[str], str] | None = None,
        turn: tuple[str, str] | None = None,
    ) -> Admission:
        """One ADMIT per slot, all at once: each counter on its own, the conversation and the records on
        their owner's (records of another owner apart), a turn id on its owner's."""
        windows = [c.window_slot() for c in counts]
        calls = [
            self._run(
                self._admit, keys=[self._counter(c.key, slot)], args=[1, "0", c.amount, c.window + 1, c.cap]
            )
            for c, (slot, _) in zip(counts, windows, strict=True)
        ]
        apart = records is not None and conversation is not None and records[2] != conversation[2]
        reads = [(conversation, None), (None, records)] if apart else [(conversation, records)]
        for read in reads:
            keys, args = self._reads(*read)
            if keys:
                calls.append(self._run(self._admit, keys=keys, args=args))
        if turn is not None:
            calls.append(self._run(self._admit, keys=[self._turn(*turn)], args=[0, "0"]))
        async with self._guard():
            answers = await asyncio.gather(*calls)
        seen = turn is not None and answers.pop()[2][0] is not None
        totals = [(int(a[0]), reset) for a, (_, reset) in zip(answers, windows, strict=False)]
        meta_flat: list[Any] = []
        raw_messages: list[Any] = []
        raw_records: list[Any] = []
        for answer in answers[len(counts) :]:
            meta_flat, raw_messages = meta_flat or answer[0], raw_messages or answer[1]
            raw_records += answer[2]
        return replace(_admission(totals, meta_flat, raw_messages, raw_records), turn_seen=seen)

    async def _after_commit(
        self, turn: TurnWrite | None, record: RecordWrite | None, results: list[Any]
    ) -> None:
        """The steps after the owner's slot: the records an index let go are deleted, and a turn written
        is brought into the shared accounting and its quota."""
        if record is not None:  # its count in the index ran last
            await self._drop_records(record.kind, results[-1])
        # a replayed turn of a conversation since gone (no size) has nothing to count
        if turn is not None and results[0] and results[0][3] is not None:
            await self._account(turn, int(results[0][3]), int(results[0][4]))

    def _turn_operation(self, turn: TurnWrite, now: str) -> Operation:
        base = self._conversation(turn.kind, turn.owner, turn.conversation_id)
        encoded = [orjson.dumps(m) for m in turn.messages]
        costs = [encoded_cost(e) for e in encoded]
        keys = [f"{base}:meta", f"{base}:msgs", f"{base}:costs", self._mine(turn.kind, turn.owner)]
        if turn.turn_id:
            keys.append(self._turn(turn.owner, turn.turn_id))
        if turn.replace_last:
            args: list[Any] = [slot_of(turn.owner, turn.conversation_id), now, turn.model, turn.tokens]
            args += [settings.CONVERSATION_TTL, repr(time.time()), title_for(turn.messages)]
            args += [settings.CONVERSATION_MAX_MESSAGES, settings.STORE_MAX_BYTES]
            return "conv_replace", keys, [*args, len(encoded), *encoded, *costs]
        cap = conversation_cap(turn.quota_key, settings.STORE_MAX_BYTES, settings.CLIENT_STORAGE_BYTES)
        args = [now, turn.model, turn.tokens, settings.CONVERSATION_MAX_MESSAGES, settings.CONVERSATION_TTL]
        args += [repr(time.time()), cap, turn.owner, turn.conversation_id, title_for(turn.messages)]
        return "conv_append", keys, [*args, CONVERSATION_OVERHEAD, len(encoded), *encoded, *costs]

    async def _account(self, turn: TurnWrite, size: int, version: int) -> None:
        """The steps after a turn's write: the shared accounting and the quota (at once), then what they
        evicted. A replaced turn keeps the conversation's quota key and evicts nothing."""
        member = f"{turn.kind}:{slot_of(turn.owner, turn.conversation_id)}"
        score, cutoff = repr(time.time()), repr(time.time() - settings.CONVERSATION_TTL)
        quota = "=" if turn.replace_last else turn.quota_key or ""
        most = 0 if turn.replace_last else settings.CONVERSATION_MAX
        args: list[Any] = [member, size, score, quota, settings.STORE_MAX_BYTES, most, cutoff, version]
        records = [key for kind in Kind for key in self._record_keys(kind)]  # see account
        operations: list[Operation] = [("account", [*self._globals(), *records], args)]
        if turn.quota_key and not turn.replace_last:
            args = [member, size, score, settings.CLIENT_STORAGE_BYTES, settings.CONVERSATION_TTL, version]
            operations.append(("quota_put", self._quota_keys(turn.quota_key), args))
        results = await self._batch(operations)
        prior, victims, now, stale = results[0]
        prior, now = _text(prior), _text(now)
        evicted = [(_text(m), _text(v)) for m, v in results[1]] if len(results) > 1 else []
        if turn.replace_last and now:  # the quota key it has: its new size there
            args = [member, size, score, 0, settings.CONVERSATION_TTL, version]
            await self._batch([("quota_put", self._quota_keys(now), args)])
        # counted against another quota key than before: it leaves the former (or, when a later write
        # was counted first, the one this write just put it in)
        left = (turn.quota_key or "") if stale else prior
        moved = (member, left) if left and left != now else None
        await self._settle(_victims(victims), evicted, moved)

    def _record_operations(self, record: RecordWrite) -> tuple[list[Operation], list[Operation]]:
        """The record and its score on its owner's slot, then (a step later) its count in the shared
        index: counted before it was kept, an eviction meanwhile would find no score of its to match,
        and the record, written after, would live on uncounted."""
        key = self._record(record.kind, record.owner, record.record_id)
        raw = orjson.dumps(record.record)
        args = self._record_count_args(record, raw)
        return (
            [("record_set", [key, f"{key}:score"], [raw, settings.CONVERSATION_TTL, args[2]])],
            [("index_record", [*self._record_counts(record.kind), self._stats_key()], args)],
        )

    async def _drop_records(self, kind: Kind, answer: list[Any]) -> None:
        """Delete the records the kind's index let go, each on its owner's slot, unless written again
        since (its new write is counted: the key stays)."""
        victims, scores = answer
        operations: list[Operation] = []
        for slot, score in zip(victims, scores, strict=True):
            key = self._record(kind, *_text(slot).split("/", 1))
            operations.append(("record_drop", [key, f"{key}:score"], [score]))
        if operations:
            await self._batch(operations)

    async def delete(self, kind: Kind, conversation_id: str, *, owner: str) -> bool:
        member = f"{kind}:{slot_of(owner, conversation_id)}"
        operations = [*self._forget_operations([(member, "")]), ("unaccount", self._globals(), ["0", member])]
        forgotten, (accounted, quotas) = await self._batch(operations)
        await self._settle([(member, _text(quotas[0]), "")] if quotas else [])
        return bool(forgotten or accounted)

    async def clear(self, kind: Kind, *, owner: str) -> int:
        async with self._guard():
            await self._prune()
            slots = [_text(s) for s in await self._call(self._redis.zrange(self._mine(kind, owner), 0, -1))]
        if not slots:
            return 0
        members = [f"{kind}:{slot}" for slot in slots]
        forgotten, (_, quotas) = await self._batch(
            [
                *self._forget_operations([(m, "") for m in members]),
                ("unaccount", self._globals(), ["0", *members]),
            ]
        )
        await self._settle([(m, _text(q), "") for m, q in zip(members, quotas, strict=True)])
        return int(forgotten)

    async def delete_message(self, kind: Kind, conversation_id: str, message_id: str, *, owner: str) -> bool:
        base = self._conversation(kind, owner, conversation_id)
        async with self._guard():
            found = await self._find_messages(base, message_id)
        if not found:
            return False
        keys = [f"{base}:meta", f"{base}:msgs", f"{base}:costs"]
        [answer] = await self._batch([("conv_delete_message", keys, found)])
        if not answer[0]:
            return False
        member, size, version = f"{kind}:{slot_of(owner, conversation_id)}", int(answer[1]), int(answer[2])
        [quota] = await self._batch([("resize", self._globals(), [member, size, version])])
        if _text(quota):
            args = [member, size, 0, 0, settings.CONVERSATION_TTL, version]
            await self._batch([("quota_put", self._quota_keys(_text(quota)), args)])
        return True

    async def delete_record(self, kind: Kind, record_id: str, *, owner: str) -> bool:
        key = self._record(kind, owner, record_id)
        async with self._guard(writing=True):
            deleted, _ = await asyncio.gather(
                self._call(self._redis.delete(key, f"{key}:score")),
                self._batch([("unindex_record", self._record_counts(kind), [slot_of(owner, record_id)])]),
            )
        return bool(deleted)


def _victims(flat: list[Any]) -> list[Victim]:
    return [(_text(member), _text(quota), _text(counted)) for member, quota, counted in flat]
