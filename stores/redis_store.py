"""The shared store on Redis: every write is one atomic script or transaction, so processes
sharing one Redis never overwrite each other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from typing import Any, TypeVar

import hiredis
import orjson
import redis.asyncio as redis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterCrossSlotError, MovedError, NoScriptError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.auth import ANONYMOUS
from core.clock import utc_now_iso
from core.errors import StoreOutcomeUnknown, StoreUnavailable
from stores.base import (
    CONVERSATION_OVERHEAD,
    MAX_MODELS_TRACKED,
    OTHER_MODEL,
    TURN_ID_TTL,
    Admission,
    CallRecord,
    Conversation,
    Count,
    Kind,
    RecordWrite,
    TurnWrite,
    encoded_cost,
    slot_of,
    stored_id,
    title_for,
)
from stores.redis_wire import WireClient

logger = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_ID_TTL = 60  # seconds a batch's own key stays: redis-py retries at once, never later

# Every conversation is kept under its slot, "<owner>/<id>" (an owner id holds no "/" and no ":"):
# `<prefix>conv:<kind>:<slot>:meta` (a hash), `:msgs` (its messages as JSON) and `:costs` (each
# message's encoded_cost, beside it), expiring after CONVERSATION_TTL idle. Beside them:
# `index:<kind>` (slots by last write, for listing every owner's), `mine:<kind>:<owner>` (one owner's
# slots by last write), `lru` ("<kind>:<slot>" by last write, every kind),
# `sizes` ("<kind>:<id>" -> what it costs), `owners` ("<kind>:<id>" -> quota key), `bytes` (what all
# cost), `quota:<key>:bytes` and `quota:<key>:lru` (one quota key's). `sizes` and `owners` outlive an
# expired conversation's keys, so the totals are always corrected when it is forgotten.
# The n values at args[at + 1 ...] pushed onto `list` (both stores' append and replace): a command per
# thousand, not one each (a command costs a script more than its work). Answers the list's length after.
# A conversation's own bounds (both stores' append and replace): whole turns go, oldest first, while it
# holds more than `max_messages` messages (`length`, as push_all answered) or more than `cap` bytes,
# and a reply is never left first; its `n` newest messages always stay. Answers its length and size.
TRIM_TURNS = """
local function push_all(list, args, at, n)
  if n == 0 then return redis.call('LLEN', list) end
  local length
  for first = at + 1, at + n, 1000 do
    length = redis.call('RPUSH', list, unpack(args, first, math.min(first + 999, at + n)))
  end
  return length
end

local function trim_turns(meta, msgs, costs, n, length, max_messages, size, cap)
  local excess = length - max_messages
  if length > n and (excess > 0 or size > cap) then
    local candidates = redis.call('LRANGE', costs, 0, length - n - 1)
    local dropped, freed = 0, 0
    while dropped < #candidates do
      local more = dropped < excess or size - freed > cap
      if not more and dropped > 0 then  -- never a reply first (stores.base.is_reply): its turn goes whole
        local next = cjson.decode(redis.call('LINDEX', msgs, dropped))
        local kind = next.type
        more = (type(kind) == 'string' and kind ~= '' and kind ~= 'message') or next.role == 'assistant'
      end
      if not more then break end
      freed = freed + tonumber(candidates[dropped + 1])
      dropped = dropped + 1
    end
    if dropped > 0 then
      redis.call('LTRIM', msgs, dropped, -1)
      redis.call('LTRIM', costs, dropped, -1)
      redis.call('HINCRBY', meta, 'dropped_messages', dropped)
      length, size = length - dropped, size - freed
    end
  end
  return length, size
end
"""

# The last turn (from its user message on) swapped for the n messages at args[at + 1 ...] and their n
# costs after them (both stores' replace): the dropped replies' tokens leave the total and `tokens`
# join it, the dropped costs leave `size` and the new ones join it; an emptied conversation takes
# `title`. Answers the size and the token total after.
SWAP_LAST_TURN = """
local function swap_last_turn(meta, msgs, costs, size, title, args, at, tokens)
  local n = tonumber(args[at])
  -- the last turn: from the last user message on, read back from the end 8 at a time (none: nothing)
  local length = redis.call('LLEN', msgs)
  local cut, freed, seen, replies = 0, 0, 0, 0
  while cut == 0 and seen < length do
    local block = redis.call('LRANGE', msgs, -(seen + 8), -(seen + 1))
    for i = #block, 1, -1 do
      local message = cjson.decode(block[i])
      seen = seen + 1
      if message.tokens then replies = replies + tonumber(message.tokens) end
      if message.role == 'user' then cut, freed = seen, replies; break end
    end
  end
  if cut > 0 then
    for _, cost in ipairs(redis.call('LRANGE', costs, -cut, -1)) do size = size - tonumber(cost) end
    redis.call('LTRIM', msgs, 0, -cut - 1)
    redis.call('LTRIM', costs, 0, -cut - 1)
  end
  if redis.call('LLEN', msgs) == 0 then redis.call('HSET', meta, 'title', title) end
  push_all(msgs, args, at, n)
  push_all(costs, args, at + n, n)
  for i = 1, n do size = size + tonumber(args[at + n + i]) end
  local total = tonumber(redis.call('HGET', meta, 'total_tokens') or '0') - freed + tokens
  if total < 0 then total = 0 end
  return size, total
end
"""

LIBRARY = (
    TRIM_TURNS
    + SWAP_LAST_TURN
    + """
local function detach(prefix, member)
  local bytes = tonumber(redis.call('HGET', prefix .. 'sizes', member)) or 0
  redis.call('HDEL', prefix .. 'sizes', member)
  redis.call('DECRBY', prefix .. 'bytes', bytes)
  local owner = redis.call('HGET', prefix .. 'owners', member)
  if owner then
    redis.call('HDEL', prefix .. 'owners', member)
    local quota = prefix .. 'quota:' .. owner
    redis.call('ZREM', quota .. ':lru', member)
    if redis.call('DECRBY', quota .. ':bytes', bytes) <= 0 then redis.call('DEL', quota .. ':bytes') end
  end
  return bytes
end

local function forget(prefix, member)
  local sep = string.find(member, ':', 1, true)
  local kind, id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local base = prefix .. 'conv:' .. kind .. ':' .. id
  local existed = redis.call('DEL', base .. ':meta', base .. ':msgs', base .. ':costs')
  existed = existed + redis.call('ZREM', prefix .. 'index:' .. kind, id)
  local slash = string.find(id, '/', 1, true)
  if slash then redis.call('ZREM', prefix .. 'mine:' .. kind .. ':' .. string.sub(id, 1, slash - 1), id) end
  redis.call('ZREM', prefix .. 'lru', member)
  return existed > 0, detach(prefix, member)
end

local function expire(prefix, cutoff)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', prefix .. 'lru', '-inf', '(' .. cutoff)) do
    forget(prefix, member)
  end
end

local function oldest_other(zset, member)
  local two = redis.call('ZRANGE', zset, 0, 1)
  if two[1] ~= member then return two[1] end
  return two[2]
end
"""
)

# KEYS: meta, msgs, costs, index, stats, the owner's index (then the turn id's key, see BATCH).
# ARGV: 1 slot, 2 now (iso), 3 model, 4 tokens, 5 max messages, 6 ttl, 7 score (epoch seconds),
# 8 max conversations, 9 prefix, 10 kind,
# 11 quota key ('' for none), 12 the client's quota (0 = off), 13 the store's bound, 14 the
# conversation's own overhead, 15 n (messages), 16 the conversation's owner, 17 its id, 18 its title,
# then n messages (JSON), then their n costs.
APPEND = """
local meta, msgs, costs, index, stats, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, now, model = ARGV[1], ARGV[2], ARGV[3]
local max_messages, ttl, score = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local max_conversations, prefix, kind, owner = tonumber(ARGV[8]), ARGV[9], ARGV[10], ARGV[11]
local client_max, store_max, n = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[15])
local member = kind .. ':' .. id
local lru, total = prefix .. 'lru', prefix .. 'bytes'
expire(prefix, score - ttl)
local size, tokens = 0, tonumber(ARGV[4])
if redis.call('EXISTS', meta) == 0 then
  -- what an expired conversation of this id left behind (its figures are kept until it is forgotten)
  if redis.call('HEXISTS', prefix .. 'sizes', member) == 1 then forget(prefix, member) end
  redis.call('HSET', meta, 'id', ARGV[17], 'created_at', now, 'total_tokens', tokens, 'dropped_messages', 0,
    'owner', ARGV[16], 'title', ARGV[18], 'updated_at', now, 'model', model)
else
  size = detach(prefix, member)
  redis.call('HSET', meta, 'updated_at', now, 'model', model)
  tokens = redis.call('HINCRBY', meta, 'total_tokens', tokens)
end
if size == 0 then size = tonumber(ARGV[14]) end
local length = push_all(msgs, ARGV, 18, n)
push_all(costs, ARGV, 18 + n, n)
for i = 1, n do size = size + tonumber(ARGV[18 + n + i]) end
-- the conversation's own bounds: whole turns go, oldest first; the new messages always stay
local cap = store_max
if owner ~= '' and client_max > 0 and client_max < cap then cap = client_max end
length, size = trim_turns(meta, msgs, costs, n, length, max_messages, size, cap)
redis.call('EXPIRE', meta, ttl)
redis.call('EXPIRE', msgs, ttl)
redis.call('EXPIRE', costs, ttl)
redis.call('ZADD', index, score, id)
redis.call('ZADD', mine, score, id)
redis.call('EXPIRE', mine, ttl)
redis.call('ZADD', lru, score, member)
redis.call('HSET', prefix .. 'sizes', member, size)
local stored, used = redis.call('INCRBY', total, size), 0
if owner ~= '' then
  local quota = prefix .. 'quota:' .. owner
  redis.call('HSET', prefix .. 'owners', member, owner)
  redis.call('ZADD', quota .. ':lru', score, member)
  used = redis.call('INCRBY', quota .. ':bytes', size)
end
-- the shared bounds: the client's quota (its own oldest go), the store's bytes, the count per kind
-- (a victim's bytes leave both totals, as forget takes them off: no command to read them again)
local evicted = 0
if owner ~= '' and client_max > 0 then
  local quota = prefix .. 'quota:' .. owner
  while used > client_max do
    local victim = oldest_other(quota .. ':lru', member)
    if not victim then break end
    local _, freed = forget(prefix, victim)
    used, stored = used - freed, stored - freed
    evicted = evicted + 1
  end
end
-- the room the records kept leave (they give way only to records: see RECORDS); when that is too
-- little, the expired ones leave the counts first (only a record's write sweeps them otherwise)
local records = tonumber(redis.call('GET', prefix .. 'records:bytes')) or 0
if records > 0 and stored > store_max - records then
  local per_kind = {}
  for _, kind in ipairs(RECORD_KINDS) do
    local base = prefix .. 'records:' .. kind
    local keys = {base}
    for _, part in ipairs(RECORD_PARTS) do keys[#keys + 1] = base .. ':' .. part end
    keys[7], keys[8] = prefix .. 'records:bytes', total
    per_kind[#per_kind + 1] = keys
  end
  sweep_records(per_kind, score - ttl)
  records = tonumber(redis.call('GET', prefix .. 'records:bytes')) or 0
end
local room = store_max - records
while stored > room do
  local victim = oldest_other(lru, member)
  if not victim then break end
  local _, freed = forget(prefix, victim)
  stored = stored - freed
  evicted = evicted + 1
end
while redis.call('ZCARD', index) > max_conversations do
  local victim = oldest_other(index, id)
  if not victim then break end
  forget(prefix, kind .. ':' .. victim)
  evicted = evicted + 1
end
if evicted > 0 then redis.call('HINCRBY', stats, 'evictions', evicted) end
return {length, tokens}
"""

# KEYS: meta, msgs, costs, index, the owner's index (then the turn id's key). ARGV: 1 prefix,
# 2 "<kind>:<slot>", 3 now (iso), 4 model, 5 tokens, 6 ttl, 7 score, 8 title, 9 max messages, 10 the
# client's quota (0 = off), 11 the store's bound, 12 n, then n messages (JSON), then their n costs. Drops
# the last turn (from its user message on: its replies' tokens leave the total, its bytes the
# counts) and appends the new one, in one step; false if there is no such conversation.
REPLACE = """
local meta, msgs, costs = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 0 then return false end
local prefix, member = ARGV[1], ARGV[2]
local ttl, score = tonumber(ARGV[6]), tonumber(ARGV[7])
local quota = redis.call('HGET', prefix .. 'owners', member)
local size, total = swap_last_turn(
  meta, msgs, costs, detach(prefix, member), ARGV[8], ARGV, 12, tonumber(ARGV[5]))
local cap, client_max = tonumber(ARGV[11]), tonumber(ARGV[10])
if quota and client_max > 0 and client_max < cap then cap = client_max end
local length = redis.call('LLEN', msgs)
length, size = trim_turns(meta, msgs, costs, tonumber(ARGV[12]), length, tonumber(ARGV[9]), size, cap)
redis.call('HSET', meta, 'updated_at', ARGV[3], 'model', ARGV[4], 'total_tokens', total)
for _, key in ipairs({meta, msgs, costs, KEYS[5]}) do redis.call('EXPIRE', key, ttl) end
local slot = string.sub(member, string.find(member, ':', 1, true) + 1)
redis.call('ZADD', KEYS[4], score, slot)
redis.call('ZADD', KEYS[5], score, slot)
redis.call('ZADD', prefix .. 'lru', score, member)
redis.call('HSET', prefix .. 'sizes', member, size)
redis.call('INCRBY', prefix .. 'bytes', size)
if quota then
  redis.call('HSET', prefix .. 'owners', member, quota)
  redis.call('ZADD', prefix .. 'quota:' .. quota .. ':lru', score, member)
  redis.call('INCRBY', prefix .. 'quota:' .. quota .. ':bytes', size)
end
return {length, total}
"""

# Marks every message of `msgs` whose JSON is one of `wanted` (and its cost, the two lists aligned), then
# removes the marked: what their costs come to, 0 when none was there (both stores' delete_message).
DROP_MESSAGES = """
local function drop_messages(msgs, costs, wanted)
  local gone = {}
  for _, raw in ipairs(wanted) do gone[raw] = true end
  local freed, found = 0, 0
  for i, raw in ipairs(redis.call('LRANGE', msgs, 0, -1)) do
    if gone[raw] then
      found = found + 1
      freed = freed + (tonumber(redis.call('LINDEX', costs, i - 1)) or 0)
      redis.call('LSET', msgs, i - 1, '\\0gone')
      if redis.call('LLEN', costs) >= i then redis.call('LSET', costs, i - 1, '\\0gone') end
    end
  end
  if found > 0 then
    redis.call('LREM', msgs, 0, '\\0gone')
    redis.call('LREM', costs, 0, '\\0gone')
  end
  return found, freed
end
"""

# KEYS: msgs, costs. ARGV: prefix, "<kind>:<slot>", then the messages (their JSON, exactly). Removes
# every message that is one of them, and its cost, and takes the costs off the byte counts.
DELETE_MESSAGE = (
    DROP_MESSAGES
    + """
local msgs, costs = KEYS[1], KEYS[2]
local prefix, member = ARGV[1], ARGV[2]
local found, cost = drop_messages(msgs, costs, {unpack(ARGV, 3)})
if found == 0 then return 0 end
if redis.call('HEXISTS', prefix .. 'sizes', member) == 1 then
  redis.call('HINCRBY', prefix .. 'sizes', member, -cost)
  redis.call('DECRBY', prefix .. 'bytes', cost)
  local quota = redis.call('HGET', prefix .. 'owners', member)
  if quota then redis.call('DECRBY', prefix .. 'quota:' .. quota .. ':bytes', cost) end
end
return 1
"""
)

# KEYS: lru (it routes the script to its node in a cluster). ARGV: prefix, cutoff (epoch seconds).
# Forgets every conversation idle past the TTL.
PRUNE = (
    LIBRARY
    + """
expire(ARGV[1], tonumber(ARGV[2]))
return 1
"""
)

# KEYS: lru (for routing). ARGV: prefix, "<kind>:<slot>". Deletes one conversation: 1 if there was one.
DELETE = (
    LIBRARY
    + """
if forget(ARGV[1], ARGV[2]) then return 1 end
return 0
"""
)

# KEYS: the owner's index. ARGV: prefix, kind. Deletes every conversation of one owner and kind.
CLEAR = (
    LIBRARY
    + """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do forget(ARGV[1], ARGV[2] .. ':' .. id) end
redis.call('DEL', KEYS[1])
return #ids
"""
)


# A kind's records, counted (both stores; on a cluster every key here is one of the shared accounting's,
# on its slot, and the records themselves are deleted on their owners' slots after). K: 1 the index
# (slot -> last write, epoch seconds), 2 sizes (slot -> bytes), 3 quotas (slot -> its by-quota member),
# 4 by-quota (score 0, members "<quota key>\0<last write>\0<slot>": a quota key's records, oldest
# first, in one key), 5 quota bytes (quota key -> bytes), 6 the kind's bytes, 7 every kind's records'
# bytes, 8 the conversations' bytes (all three share STORE_MAX_BYTES; a conversation's write makes room
# for the records kept, a record's gets the room the rest leave); index_record also takes 9 the
# statistics (its evictions are counted there).
RECORD_COUNT_PARTS = ("sizes", "quotas", "by-quota", "quota-bytes", "bytes")  # RECORDS' keys 2-6, by name
RECORDS = (
    "local RECORD_KINDS = {"
    + ", ".join(f"'{kind}'" for kind in Kind)
    + "}\nlocal RECORD_PARTS = {"
    + ", ".join(f"'{part}'" for part in RECORD_COUNT_PARTS)
    + "}\n"
    + """
local function unindex_record(K, slot)
  local bytes = tonumber(redis.call('HGET', K[2], slot) or '0')
  local member = redis.call('HGET', K[3], slot)
  local existed = redis.call('ZREM', K[1], slot)
  if bytes > 0 then
    redis.call('HDEL', K[2], slot)
    redis.call('DECRBY', K[6], bytes)
    redis.call('DECRBY', K[7], bytes)
  end
  if member then
    redis.call('HDEL', K[3], slot)
    redis.call('ZREM', K[4], member)
    local quota = string.sub(member, 1, string.find(member, '\0', 1, true) - 1)
    if redis.call('HINCRBY', K[5], quota, -bytes) <= 0 then redis.call('HDEL', K[5], quota) end
  end
  return existed, bytes
end

-- the records written before `cutoff` (expired: Redis has let their keys go) out of the counts, for
-- each kind's keys in `per_kind`
local function sweep_records(per_kind, cutoff)
  for _, K in ipairs(per_kind) do
    for _, old in ipairs(redis.call('ZRANGEBYSCORE', K[1], '-inf', '(' .. cutoff)) do
      unindex_record(K, old)
    end
  end
end

-- A: 1 slot, 2 bytes, 3 score (epoch seconds), 4 ttl, 5 quota key ('' none), 6 the client's quota (0:
-- off), 7 the store's bound, 8 most records of the kind. Counts one record written (expired ones leave
-- the counts): beyond its quota key's quota its own oldest go, beyond the room the others leave or the
-- count anyone's oldest of the kind; never the one written. Answers the slots of those that went, and
-- the scores they were counted at (a cluster deletes a victim's key only if it was not written since).
local function index_record(K, A)
  local slot, size, score, ttl = A[1], tonumber(A[2]), tonumber(A[3]), tonumber(A[4])
  local quota, client_max, store_max, most = A[5], tonumber(A[6]), tonumber(A[7]), tonumber(A[8])
  sweep_records({K}, score - ttl)
  unindex_record(K, slot)
  redis.call('ZADD', K[1], score, slot)
  redis.call('HSET', K[2], slot, size)
  local total = redis.call('INCRBY', K[6], size)
  redis.call('INCRBY', K[7], size)
  local victims, scores = {}, {}
  local function evict(victim)
    scores[#victims + 1] = redis.call('ZSCORE', K[1], victim) or '0'
    local _, freed = unindex_record(K, victim)
    total = total - freed
    victims[#victims + 1] = victim
    return freed
  end
  if quota ~= '' then
    local member = quota .. '\0' .. string.format('%020.6f', score) .. '\0' .. slot
    redis.call('HSET', K[3], slot, member)
    redis.call('ZADD', K[4], 0, member)
    local used = redis.call('HINCRBY', K[5], quota, size)
    local first, last = '[' .. quota .. '\0', '(' .. quota .. '\1'
    while client_max > 0 and used > client_max do
      -- the oldest other: a writer whose clock is behind may have made this one the oldest
      local two = redis.call('ZRANGEBYLEX', K[4], first, last, 'LIMIT', 0, 2)
      local oldest = two[1]
      if oldest == member then oldest = two[2] end
      if not oldest then break end
      used = used - evict(string.sub(oldest, string.find(oldest, '\0', #quota + 2, true) + 1))
    end
  end
  -- what the conversations and the other kinds' records leave (evicting from this kind changes neither)
  local others = tonumber(redis.call('GET', K[7]) or '0') - total
  local room = store_max - (tonumber(redis.call('GET', K[8])) or 0) - others
  while total > room or redis.call('ZCARD', K[1]) > most do
    local two = redis.call('ZRANGE', K[1], 0, 1)
    local victim = two[1]
    if victim == slot then victim = two[2] end
    if not victim then break end
    evict(victim)
  end
  if #victims > 0 then redis.call('HINCRBY', K[9], 'evictions', #victims) end
  return victims, scores
end
"""
)

# KEYS: the record, then RECORDS' keys. ARGV: the record's slot. 1 if there was one.
DELETE_RECORD = (
    RECORDS
    + """
local counts = {}
for i = 2, #KEYS do counts[i - 1] = KEYS[i] end
unindex_record(counts, ARGV[1])
return redis.call('DEL', KEYS[1])
"""
)

# KEYS: totals hash, model set, errors hash, the model's own hash, the hash the rest are counted in.
# ARGV: model, prompt tokens, completion tokens, error kind ("" for none), most models tracked, the name
# the rest are counted under.
RECORD = """
local model, per_model = ARGV[1], KEYS[4]
if redis.call('SISMEMBER', KEYS[2], model) == 0 then
  if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[5]) then model, per_model = ARGV[6], KEYS[5] end
  redis.call('SADD', KEYS[2], model)
end
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

# KEYS: the record, then RECORDS' keys, then the statistics. ARGV: the record (JSON), the key base of
# the kind's records, then index_record's arguments. Keeps the record and counts it: the records that go
# for it are deleted (and counted as evictions).
PUT_RECORD = """
local counts, args = {}, {}
for i = 2, #KEYS do counts[i - 1] = KEYS[i] end
for i = 3, #ARGV do args[i - 2] = ARGV[i] end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(args[4]))
local victims = index_record(counts, args)
for _, slot in ipairs(victims) do redis.call('DEL', ARGV[2] .. slot) end
return #victims
"""


# What a request reads before its upstream call, in one command (a script: a pipeline of the same
# commands costs redis-py more). KEYS: n counters, then (with a conversation) its meta and msgs, then
# records. ARGV: 1 n, 2 "1" with a conversation, then per counter its amount (0 reads it), lifetime and
# cap (0: none; past it the amount is not added, see Count). Answers the n totals, the conversation's
# meta (flat) and messages, and the records.
ADMIT = """
local n, k = tonumber(ARGV[1]), tonumber(ARGV[1]) + 1
local out = {}
for i = 1, n do
  local amount, cap = tonumber(ARGV[3 * i]), tonumber(ARGV[2 + 3 * i])
  if amount ~= 0 then
    out[i] = redis.call('INCRBY', KEYS[i], amount)
    if cap > 0 and out[i] > cap then  -- refused: nothing added
      if out[i] == amount then redis.call('DEL', KEYS[i]) else redis.call('DECRBY', KEYS[i], amount) end
    -- a window's counter is a key of its own: it needs its lifetime once, when this made it
    elseif out[i] == amount then redis.call('EXPIRE', KEYS[i], ARGV[1 + 3 * i]) end
  else
    out[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
end
if ARGV[2] == '1' then
  out[n + 1] = redis.call('HGETALL', KEYS[k])
  out[n + 2] = redis.call('LRANGE', KEYS[k + 1], 0, -1)
  k = k + 2
else
  out[n + 1], out[n + 2] = {}, {}
end
local records = {}
for i = k, #KEYS do records[#records + 1] = redis.call('GET', KEYS[i]) end
out[n + 3] = records
return out
"""

# KEYS: the counter. ARGV: the amount, its lifetime (seconds). Adds to a fixed-window counter.
TALLY = """
local amount = tonumber(ARGV[1])
local total = redis.call('INCRBY', KEYS[1], amount)
if total == amount then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
return total
"""


def _function(name: str, body: str) -> str:
    """A script body above as a Lua function of its own keys and arguments (K, A)."""
    body = re.sub(r"\bARGV\b", "A", re.sub(r"\bKEYS\b", "K", body))
    return f"local function {name}(K, A)\n{body}\nend\n"


# Several writes in one script: one round trip, all or nothing. KEYS[1] is the batch's own key: a batch
# run again (redis-py retrying it on a fresh connection after the first one broke, when its outcome is
# unknown) answers what the first run answered and writes nothing. ARGV: 1 n (operations), then n
# triples (name, how many keys, how many arguments), then each operation's arguments; KEYS[2...] each
# operation's keys, in order. `append` and `replace` take one key more when the turn has an id: a turn
# id seen before (a client retrying a turn) stores nothing and answers {length, tokens, 1}.
def batch_script(functions: str, operations: str) -> str:
    """BATCH over these Lua functions; `operations` are the entries of its table of operations."""
    return (
        functions
        + f"""
local function seen(turn)
  if not turn then return nil end
  local prior = redis.call('GET', turn)
  if not prior then return nil end
  local sep = string.find(prior, ',', 1, true)
  return {{tonumber(string.sub(prior, 1, sep - 1)), tonumber(string.sub(prior, sep + 1)), 1}}
end

local function once(turn, result)
  if turn and result then redis.call('SET', turn, result[1] .. ',' .. result[2], 'EX', {TURN_ID_TTL}) end
  if result then result[3] = 0 end
  return result
end

local ops = {{
{operations}
}}

local done = redis.call('GET', KEYS[1])
if done then return cjson.decode(done) end
local n = tonumber(ARGV[1])
local k, a = 2, 2 + 3 * n
local results = {{}}
for i = 1, n do
  local name, nk, na = ARGV[3 * i - 1], tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local K, A = {{}}, {{}}
  for j = 1, nk do K[j] = KEYS[k + j - 1] end
  for j = 1, na do A[j] = ARGV[a + j - 1] end
  k, a = k + nk, a + na
  results[i] = ops[name](K, A) or false
end
redis.call('SET', KEYS[1], cjson.encode(results), 'EX', {BATCH_ID_TTL})
return results
"""
    )


BATCH = batch_script(
    LIBRARY
    + RECORDS
    + _function("append_turn", APPEND)
    + _function("replace_turn", REPLACE)
    + _function("record_call", RECORD)
    + _function("put_record", PUT_RECORD)
    + _function("tally", TALLY),
    """  append = function(K, A) return seen(K[7]) or once(K[7], append_turn(K, A)) end,
  replace = function(K, A) return seen(K[6]) or once(K[6], replace_turn(K, A)) end,
  record = record_call,
  put_record = put_record,
  tally = tally,""",
)

Operation = tuple[str, list[Any], list[Any]]  # a BATCH operation: its name, keys and arguments


class HiredisPacking:
    """redis-py's asyncio connections pack each command in Python, copying its buffer once per
    argument: a turn's script call of about 50 arguments spent more time there than Redis spent
    running it. hiredis (installed with redis[hiredis]) packs it in C, as redis-py's own synchronous
    client does. Mixed into the pool's connection class (TCP, TLS or Unix socket, as the URL says);
    tests/test_redis_packing.py checks the bytes are the same as redis-py's own."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):  # a command name of several words ("SCRIPT LOAD") goes as several
            args = (*args[0].encode().split(), *args[1:])
        return [hiredis.pack_command(args)]


def hiredis_packed(connection_class: type[Any]) -> type[Any]:
    return type(f"HiredisPacked{connection_class.__name__}", (HiredisPacking, connection_class), {})


class RedisStore:
    """The store on one Redis node (see redis_cluster.RedisClusterStore for a Redis Cluster)."""

    kind_name = "redis"
    script_header = ""  # prepended to every script (the cluster tests make it "#!lua": see there)
    batch_source = BATCH

    def __init__(self, url: str, *, prefix: str = "gw:") -> None:
        # A pool that waits (up to REDIS_POOL_TIMEOUT) for a free connection instead of refusing one, and
        # one retry on a fresh connection when a pooled one turns out dead (a Redis restart closed it):
        # reads and the rate-limit count are safe to send twice, and every script write is a BATCH,
        # which answers a repeat without writing again. A timeout is never retried: Redis may have run
        # the command (see StoreOutcomeUnknown).
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        self._gate: asyncio.Semaphore | None = None
        self._wire: WireClient | None = None  # the scripts' own pipelined connection (one Redis)
        self._redis: Any = self._connect(url, retry)
        self._prefix = prefix
        self._batch_script = self._script(self.batch_source)
        self._admit = self._script(ADMIT)
        self._prune_script = self._script(PRUNE)
        self._delete = self._script(DELETE)
        self._delete_message = self._script(DELETE_MESSAGE)
        self._delete_record = self._script(DELETE_RECORD)
        self._clear = self._script(CLEAR)

    def _connect(self, url: str, retry: Retry) -> Any:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=settings.REDIS_POOL_TIMEOUT,
            socket_timeout=settings.REDIS_TIMEOUT,
            socket_connect_timeout=1.0,
            retry=retry,
            retry_on_timeout=False,
        )
        pool.connection_class = hiredis_packed(pool.connection_class)
        self._wire = WireClient(url, timeout=settings.REDIS_TIMEOUT)
        return redis.Redis.from_pool(pool)

    def _script(self, body: str) -> Any:
        return self._redis.register_script(self.script_header + body)

    @contextlib.asynccontextmanager
    async def _guard(self, *, writing: bool = False) -> AsyncIterator[None]:
        try:
            yield
        except RedisTimeoutError:
            logger.warning("redis store unavailable: timed out%s", " during a write" if writing else "")
            raise (StoreOutcomeUnknown() if writing else StoreUnavailable()) from None
        except (MovedError, ClusterCrossSlotError):  # REDIS_URL names a node of a cluster
            logger.error(
                "redis store unavailable: REDIS_URL is a node of a Redis Cluster: set REDIS_CLUSTER=true"
            )
            raise StoreUnavailable() from None
        except (RedisError, OSError) as exc:
            logger.warning("redis store unavailable: %s", type(exc).__name__)
            raise StoreUnavailable() from None

    async def _call(self, awaitable: Awaitable[T]) -> T:
        """One command (or pipeline) on one connection: on a cluster, whose pools refuse a connection
        past their bound, it waits for one of REDIS_MAX_CONNECTIONS permits instead."""
        if self._gate is None:
            return await awaitable
        async with self._gate:
            return await awaitable

    async def _run(self, script: Any, *, keys: list[Any], args: list[Any]) -> Any:
        """EVALSHA, loading the script when Redis does not know it (a restart forgets scripts). redis-py's
        own Script call does the same after an isinstance check against a Protocol class that cost more
        than the rest of the call. On one Redis, scripts go down the store's pipelined connection."""
        if self._wire is not None:
            return await self._wire.evalsha(script, keys, args)
        return await self._run_pooled(script, keys=keys, args=args)

    async def _run_pooled(self, script: Any, *, keys: list[Any], args: list[Any]) -> Any:
        """EVALSHA through redis-py's client and its pool."""
        try:
            return await self._call(self._redis.evalsha(script.sha, len(keys), *keys, *args))
        except NoScriptError:
            script.sha = await self._call(self._redis.script_load(script.script))
            return await self._call(self._redis.evalsha(script.sha, len(keys), *keys, *args))

    async def _batch(self, operations: list[Operation]) -> list[Any]:
        """Run writes in one BATCH script: one round trip, atomic, safe to send twice."""
        async with self._guard(writing=True):
            return await self._batch_on(f"{self._prefix}batch:{uuid.uuid4().hex}", operations)

    async def _batch_on(self, batch_key: str, operations: list[Operation]) -> list[Any]:
        keys: list[Any] = [batch_key]
        head: list[Any] = [len(operations)]
        tail: list[Any] = []
        for name, op_keys, op_args in operations:
            head += [name, len(op_keys), len(op_args)]
            keys += op_keys
            tail += op_args
        return list(await self._run(self._batch_script, keys=keys, args=head + tail))

    # The key layout. On one node every key is the prefix and a name; a cluster (RedisClusterStore)
    # puts a hash tag after the prefix: the owner's, a quota key's, a counter's own, or the shared one.

    def _shared(self, name: str) -> str:
        """A key of the accounting every owner shares (indexes, totals, statistics)."""
        return f"{self._prefix}{name}"

    def _owned(self, owner: str, name: str) -> str:
        """A key of one owner's (its conversations, index, records and turn ids)."""
        return f"{self._prefix}{name}"

    def _counter(self, key: str, window: int) -> str:
        return f"{self._prefix}{key}:{window}"

    def _quota(self, quota_key: str, part: str) -> str:
        return f"{self._prefix}quota:{quota_key}:{part}"

    def _lru(self) -> str:
        return self._shared("lru")

    def _index(self, kind: Kind) -> str:
        return self._shared(f"index:{kind}")

    def _mine(self, kind: Kind, owner: str) -> str:
        return self._owned(owner, f"mine:{kind}:{owner}")

    def _conversation(self, kind: Kind, owner: str, conversation_id: str) -> str:
        """The key base of one conversation: `:meta`, `:msgs` and `:costs` follow."""
        return self._owned(owner, f"conv:{kind}:{slot_of(owner, conversation_id)}")

    def _at(self, kind: Kind, slot: str) -> str:
        """The key base of the conversation kept under `slot` ("<owner>/<id>")."""
        owner, _, conversation_id = slot.partition("/")
        return self._conversation(kind, owner, conversation_id)

    def _turn(self, owner: str, turn_id: str) -> str:
        return self._owned(owner, f"turn:{turn_id}")

    def _record(self, kind: Kind, owner: str, record_id: str) -> str:
        return self._owned(owner, f"record:{kind}:{slot_of(owner, record_id)}")

    def _records(self, kind: Kind, part: str = "") -> str:
        return self._shared(f"records:{kind}:{part}" if part else f"records:{kind}")

    def _stats_key(self, suffix: str = "") -> str:
        return self._shared(f"stats{suffix}")

    async def _prune(self) -> None:
        """Forget every conversation idle past the TTL (its keys may have expired already)."""
        await self._run(
            self._prune_script,
            keys=[self._lru()],
            args=[self._prefix, repr(time.time() - settings.CONVERSATION_TTL)],
        )

    async def get(self, kind: Kind, conversation_id: str, *, owner: str) -> Conversation | None:
        base = self._conversation(kind, owner, conversation_id)
        async with self._guard():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(f"{base}:meta")
                pipe.lrange(f"{base}:msgs", 0, -1)
                meta, raw_messages = await self._call(pipe.execute())
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
        quota_key: str | None = None,
        turn_id: str | None = None,
    ) -> Conversation:
        turn = TurnWrite(kind, conversation_id, messages, owner, model, tokens, quota_key, False, turn_id)
        written = await self.commit(turn=turn)
        assert written is not None  # an append always writes
        return written

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
        return await self.commit(
            turn=TurnWrite(kind, conversation_id, messages, owner, model, tokens, None, True, turn_id)
        )

    def _reads(
        self,
        conversation: tuple[Kind, str, str] | None,
        records: tuple[Kind, list[str], str] | None,
    ) -> tuple[list[Any], list[Any]]:
        """ADMIT's keys and arguments for a conversation's and records' reads (no counters)."""
        keys: list[Any] = []
        if conversation is not None:
            kind, conversation_id, owner = conversation
            base = self._conversation(kind, owner, conversation_id)
            keys += [f"{base}:meta", f"{base}:msgs"]
        if records is not None:
            kind, record_ids, owner = records
            keys += [self._record(kind, owner, r) for r in record_ids]
        return keys, [0, "1" if conversation is not None else "0"]

    async def admit(
        self,
        counts: list[Count],
        *,
        conversation: tuple[Kind, str, str] | None = None,
        records: tuple[Kind, list[str], str] | None = None,
        turn: tuple[str, str] | None = None,
    ) -> Admission:
        windows = [c.window_slot() for c in counts]
        keys = [self._counter(c.key, slot) for c, (slot, _) in zip(counts, windows, strict=True)]
        args: list[Any] = [len(counts), "1" if conversation is not None else "0"]
        for count in counts:
            args += [count.amount, count.window + 1, count.cap]
        keys += self._reads(conversation, records)[0]
        if turn is not None:  # read as a record (after them)
            keys.append(self._turn(*turn))
        if not keys:
            return Admission([])
        async with self._guard():
            answer = await self._run(self._admit, keys=keys, args=args)
        totals = [(int(total), reset) for total, (_, reset) in zip(answer, windows, strict=False)]
        meta_flat, raw_messages, raw_records = answer[len(counts) :]
        seen = turn is not None and raw_records.pop() is not None
        return replace(_admission(totals, meta_flat, raw_messages, raw_records), turn_seen=seen)

    async def settle(self, counts: list[Count]) -> None:
        """In one BATCH (which a second send does not run again), unlike ADMIT."""
        if counts:
            await self._batch([self._tally_operation(count) for count in counts])

    async def commit(
        self,
        *,
        turn: TurnWrite | None = None,
        record: RecordWrite | None = None,
        call: CallRecord | None = None,
    ) -> Conversation | None:
        operations: list[Operation] = []
        later: list[Operation] = []  # a step of their own, once the others are written
        now = utc_now_iso()
        if turn is not None:
            operations.append(self._turn_operation(turn, now))
        if record is not None:
            written, later = self._record_operations(record)
            operations += written
        if call is not None:
            operations += self._call_operations(call)
        if not operations:
            return None
        results = await self._batch(operations)
        if later:
            results += await self._batch(later)
        await self._after_commit(turn, record, results)
        if turn is None or not results[0]:
            return None
        return _written(turn, now, results[0])

    async def _after_commit(
        self, turn: TurnWrite | None, record: RecordWrite | None, results: list[Any]
    ) -> None:
        """What a commit's batch leaves to do (nothing on one Redis: its scripts did it all)."""

    def _turn_operation(self, turn: TurnWrite, now: str) -> Operation:
        slot = slot_of(turn.owner, turn.conversation_id)
        base = self._conversation(turn.kind, turn.owner, turn.conversation_id)
        encoded = [orjson.dumps(m) for m in turn.messages]
        costs = [encoded_cost(e) for e in encoded]
        once = [self._turn(turn.owner, turn.turn_id)] if turn.turn_id else []
        if turn.replace_last:
            keys = [f"{base}:meta", f"{base}:msgs", f"{base}:costs", self._index(turn.kind)]
            keys += [self._mine(turn.kind, turn.owner), *once]
            args: list[Any] = [self._prefix, f"{turn.kind}:{slot}", now, turn.model, turn.tokens]
            args += [settings.CONVERSATION_TTL, repr(time.time()), title_for(turn.messages)]
            args += [
                settings.CONVERSATION_MAX_MESSAGES,
                settings.CLIENT_STORAGE_BYTES,
                settings.STORE_MAX_BYTES,
            ]
            return "replace", keys, [*args, len(encoded), *encoded, *costs]
        keys = [f"{base}:meta", f"{base}:msgs", f"{base}:costs", self._index(turn.kind), self._stats_key()]
        keys += [self._mine(turn.kind, turn.owner), *once]
        args = [
            slot,
            now,
            turn.model,
            turn.tokens,
            settings.CONVERSATION_MAX_MESSAGES,
            settings.CONVERSATION_TTL,
            repr(time.time()),
            settings.CONVERSATION_MAX,
            self._prefix,
            str(turn.kind),
            turn.quota_key or "",
            settings.CLIENT_STORAGE_BYTES,
            settings.STORE_MAX_BYTES,
            CONVERSATION_OVERHEAD,
            len(encoded),
            turn.owner,
            turn.conversation_id,
            title_for(turn.messages),
        ]
        return "append", keys, [*args, *encoded, *costs]

    def _record_operations(self, record: RecordWrite) -> tuple[list[Operation], list[Operation]]:
        """A record's write: its operations, and those to run once they are written (none here: one
        script keeps and counts it)."""
        raw = orjson.dumps(record.record)
        keys = [self._record(record.kind, record.owner, record.record_id), *self._record_counts(record.kind)]
        keys.append(self._stats_key())
        base = self._owned(record.owner, f"record:{record.kind}:")
        return [("put_record", keys, [raw, base, *self._record_count_args(record, raw)])], []

    def _record_keys(self, kind: Kind) -> list[str]:
        """A kind's own RECORDS keys (1-6)."""
        return [self._records(kind), *(self._records(kind, part) for part in RECORD_COUNT_PARTS)]

    def _record_counts(self, kind: Kind) -> list[str]:
        """RECORDS' keys for a record of `kind` (1-8)."""
        return [*self._record_keys(kind), self._shared("records:bytes"), self._shared("bytes")]

    @staticmethod
    def _record_count_args(record: RecordWrite, raw: bytes) -> list[Any]:
        """index_record's arguments for `record` (`raw`: its JSON)."""
        slot = slot_of(record.owner, record.record_id)
        args: list[Any] = [slot, encoded_cost(raw), repr(time.time()), settings.CONVERSATION_TTL]
        args += [record.quota_key or "", settings.CLIENT_STORAGE_BYTES, settings.STORE_MAX_BYTES]
        return [*args, settings.CONVERSATION_MAX]

    def _call_operations(self, call: CallRecord) -> list[Operation]:
        keys = [self._stats_key(), self._stats_key(":models"), self._stats_key(":errors")]
        keys += [self._stats_key(f":model:{call.model}"), self._stats_key(f":model:{OTHER_MODEL}")]
        args: list[Any] = [call.model, call.prompt_tokens, call.completion_tokens, call.error or ""]
        operations: list[Operation] = [("record", keys, [*args, MAX_MODELS_TRACKED, OTHER_MODEL])]
        operations += [self._tally_operation(charge) for charge in call.charges]
        return operations

    def _tally_operation(self, count: Count) -> Operation:
        slot, _ = count.window_slot()
        return "tally", [self._counter(count.key, slot)], [count.amount, count.window + 1]

    async def page(
        self, kind: Kind, *, owner: str | None, limit: int, offset: int
    ) -> tuple[int, list[Conversation]]:
        index = self._index(kind) if owner is None else self._mine(kind, owner)
        async with self._guard():
            await self._prune()
            total = await self._call(self._redis.zcard(index))
            stop = offset + limit - 1
            slots = [_text(i) for i in await self._call(self._redis.zrevrange(index, offset, stop))]
            async with self._redis.pipeline(transaction=False) as pipe:
                for slot in slots:
                    base = self._at(kind, slot)
                    pipe.hgetall(f"{base}:meta")
                    pipe.lrange(f"{base}:msgs", 0, 0)
                    pipe.lrange(f"{base}:msgs", -1, -1)
                    pipe.llen(f"{base}:msgs")
                results = await self._call(pipe.execute()) if slots else []
        page = []
        for n in range(len(slots)):
            meta, first, last, length = results[4 * n : 4 * n + 4]
            if meta:  # the first message (for a title) and the last (for its preview)
                ends = [*first, *last] if int(length) > 1 else first
                page.append(_conversation(meta, [orjson.loads(m) for m in ends], int(length)))
        return int(total), page

    async def delete(self, kind: Kind, conversation_id: str, *, owner: str) -> bool:
        async with self._guard():
            member = f"{kind}:{slot_of(owner, conversation_id)}"
            return bool(await self._run(self._delete, keys=[self._lru()], args=[self._prefix, member]))

    async def clear(self, kind: Kind, *, owner: str) -> int:
        async with self._guard():
            await self._prune()
            return int(
                await self._run(self._clear, keys=[self._mine(kind, owner)], args=[self._prefix, str(kind)])
            )

    async def count(self, kind: Kind) -> int:
        async with self._guard():
            await self._prune()
            return int(await self._call(self._redis.zcard(self._index(kind))))

    async def stored_bytes(self, quota_key: str | None = None) -> int:
        key = self._shared("bytes") if quota_key is None else self._quota(quota_key, "bytes")
        async with self._guard():
            await self._prune()
            return int(await self._call(self._redis.get(key)) or 0)

    def conversation_cost(self, messages: list[dict[str, Any]]) -> int:
        return CONVERSATION_OVERHEAD + sum(encoded_cost(orjson.dumps(m)) for m in messages)

    async def ping(self) -> None:
        async with self._guard():
            await self._call(self._redis.ping())

    async def record_call(
        self,
        model: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        error: str | None,
        charges: tuple[Count, ...] = (),
    ) -> None:
        await self.commit(call=CallRecord(model, prompt_tokens, completion_tokens, error, charges))

    async def usage(self) -> dict[str, Any]:
        async with self._guard():
            totals = _ints(await self._call(self._redis.hgetall(self._stats_key())))
            found = await self._call(self._redis.smembers(self._stats_key(":models")))
            models = sorted(_text(m) for m in found)
            async with self._redis.pipeline(transaction=False) as pipe:
                for model in models:
                    pipe.hgetall(self._stats_key(f":model:{model}"))
                per_model = await self._call(pipe.execute()) if models else []
            errors = _ints(await self._call(self._redis.hgetall(self._stats_key(":errors"))))
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
        async with self._guard():
            raw = await self._call(self._redis.get(f"{self._prefix}cache:{key}"))
        return None if raw is None else orjson.loads(raw)

    async def cache_set(self, key: str, value: Any, ttl: int | None) -> None:
        async with self._guard():
            await self._call(self._redis.set(f"{self._prefix}cache:{key}", orjson.dumps(value), ex=ttl))

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        return await self.tally(key, 1, window)

    async def tally(self, key: str, amount: int, window: int) -> tuple[int, int]:
        return (await self.admit([Count(key, amount, window)])).counts[0]

    async def _find_messages(self, base: str, message_id: str) -> list[bytes]:
        """The stored JSON of a conversation's messages of one id (one, unless stored before ids were
        checked)."""
        found = await self._call(self._redis.lrange(f"{base}:msgs", 0, -1))
        return list(dict.fromkeys(bytes(raw) for raw in found if stored_id(orjson.loads(raw)) == message_id))

    async def delete_message(self, kind: Kind, conversation_id: str, message_id: str, *, owner: str) -> bool:
        slot = slot_of(owner, conversation_id)
        base = self._conversation(kind, owner, conversation_id)
        async with self._guard():
            found = await self._find_messages(base, message_id)
            if not found:
                return False
            # by value: whatever else was appended meanwhile, exactly these messages go
            removed = await self._run(
                self._delete_message,
                keys=[f"{base}:msgs", f"{base}:costs"],
                args=[self._prefix, f"{kind}:{slot}", *found],
            )
        return bool(removed)

    async def put_record(
        self, kind: Kind, record_id: str, record: dict[str, Any], *, owner: str, quota_key: str | None = None
    ) -> None:
        await self.commit(record=RecordWrite(kind, record_id, record, owner, quota_key))

    async def get_records(
        self, kind: Kind, record_ids: list[str], *, owner: str
    ) -> list[dict[str, Any] | None]:
        if not record_ids:
            return []
        keys = [self._record(kind, owner, record_id) for record_id in record_ids]
        async with self._guard():
            found = await self._call(self._redis.mget(keys))
        return [None if raw is None else orjson.loads(raw) for raw in found]

    async def delete_record(self, kind: Kind, record_id: str, *, owner: str) -> bool:
        async with self._guard():
            deleted = await self._run(
                self._delete_record,
                keys=[self._record(kind, owner, record_id), *self._record_counts(kind)],
                args=[slot_of(owner, record_id)],
            )
        return bool(deleted)

    async def flush(self) -> None:
        """Delete every key of this store (tests)."""
        async with self._guard():
            keys = [k async for k in self._redis.scan_iter(match=f"{self._prefix}*")]
            if keys:
                await self._call(self._redis.delete(*keys))

    async def aclose(self) -> None:
        if self._wire is not None:
            self._wire.close()
        await self._redis.aclose()


def _admission(
    totals: list[tuple[int, int]], meta_flat: list[Any], raw_messages: list[Any], raw_records: list[Any]
) -> Admission:
    """An Admission from ADMIT's answer after its counters."""
    found = None
    if meta_flat:
        meta = dict(zip(meta_flat[::2], meta_flat[1::2], strict=True))
        messages = [orjson.loads(m) for m in raw_messages]
        found = _conversation(meta, messages, len(messages))
    kept = [None if raw is None else orjson.loads(raw) for raw in raw_records]
    return Admission(totals, found, kept)


def _written(turn: TurnWrite, now: str, result: list[Any]) -> Conversation:
    """The Conversation a turn's write answers ({length, tokens, replayed, ...})."""
    length, total, replayed = result[:3]
    return Conversation(
        id=turn.conversation_id,
        created_at=now,
        updated_at=now,
        model=turn.model,
        total_tokens=int(total),
        messages=turn.messages,
        message_count=int(length),
        owner=turn.owner,
        replayed=bool(replayed),
    )


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
        title=fields.get("title", ""),
    )
