-- wrk script for bench/run.py: POST a JSON body, optionally with conversation ids made per request,
-- optionally stopping after a fixed number of answered POSTs; prints parseable figures.
--
--   wrk -t1 -c16 -d10s -s bench/post.lua http://127.0.0.1:8000/chat/message -- body=FILE [key=value...]
--
-- Arguments after "--" (key=value):
--   body=FILE    the JSON body; every "{id}" in it becomes a conversation id (required)
--   turns=N      requests per conversation id: 1 = a new id every request, 5 = five turns each;
--                0 (default) = send the body as it is
--   prefix=S     start of the ids (a letter first; the thread number and a counter follow)
--   offset=N     first conversation counter (to continue where an earlier run stopped)
--   quota=N      send exactly N POSTs, then GET "tail" until the N answers are in, then exit
--                (0, the default: run for wrk's -d and print the figures in done())
--   mark=S       in quota mode, a POST answer counts when its body contains S (a 200 of the tail
--                does not); any answer of status >= 400 counts as a failed POST
--   tail=PATH    the cheap GET sent once the quota is used up (default /health)
--   raw=1        also time each request itself (only meaningful with one connection per thread) and
--                print those percentiles too: wrk's own are corrected for coordinated omission,
--                which adds made-up samples to a closed-loop run's tail

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local timespec = ffi.new("bench_timespec")

local function now_us()
   ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
   return tonumber(timespec.tv_sec) * 1000000 + math.floor(tonumber(timespec.tv_nsec) / 1000)
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

local template, path, turns, prefix, offset, quota, mark, tail_request, static_request
local sent, answered, failed = 0, 0, 0
local raw, started_us = false, 0
timings = {} -- global so that done() can fetch it: {[microseconds] = count}

function init(args)
   local opts = {}
   for _, arg in ipairs(args) do
      local key, value = arg:match("^([%w_]+)=(.*)$")
      if key then opts[key] = value end
   end
   local file = assert(io.open(assert(opts.body, "body=FILE is required"), "rb"))
   template = file:read("*a")
   file:close()
   path = wrk.path
   turns = tonumber(opts.turns or "0")
   prefix = (opts.prefix or "bench") .. "-t" .. tostring(tid or 1) .. "-"
   offset = tonumber(opts.offset or "0")
   quota = tonumber(opts.quota or "0")
   mark = opts.mark or "conversation_id"
   raw = opts.raw == "1"
   wrk.headers["Content-Type"] = "application/json"
   static_request = wrk.format("POST", path, wrk.headers, template)
   tail_request = wrk.format("GET", opts.tail or "/health", { ["Host"] = wrk.headers["Host"] }, nil)
end

function response(status, headers, body)
   if raw then
      local took = now_us() - started_us
      timings[took] = (timings[took] or 0) + 1
   end
   if quota == 0 then return end
   if status >= 400 then
      failed = failed + 1
   elseif body and body:find(mark, 1, true) then
      answered = answered + 1
   end
   if answered + failed >= quota then
      io.write(string.format("QUOTA answered=%d failed=%d\n", answered, failed))
      io.stdout:flush()
      os.exit(0)
   end
end

local verified = false

function request()
   -- wrk calls request() once on the first thread before the run, only to count the requests in
   -- what it returns (script_verify_request); that one is never sent, so it must not count.
   if not verified then
      verified = true
      if tid == 1 then return static_request end
   end
   if quota > 0 and sent >= quota then
      return tail_request
   end
   if raw then started_us = now_us() end
   sent = sent + 1
   if turns == 0 then
      return static_request
   end
   local id = prefix .. tostring(offset + math.floor((sent - 1) / turns))
   local body = template:gsub("{id}", id)
   return wrk.format("POST", path, wrk.headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d " ..
      "connect=%d read=%d write=%d timeout=%d status=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.mean, latency.max,
      e.connect, e.read, e.write, e.timeout, e.status))
   local merged, values, total = {}, {}, 0
   for _, thread in ipairs(threads) do
      for took, count in pairs(thread:get("timings") or {}) do
         if merged[took] == nil then table.insert(values, took) end
         merged[took] = (merged[took] or 0) + count
         total = total + count
      end
   end
   if total == 0 then return end
   table.sort(values)
   local function percentile(p)
      local seen, want = 0, math.ceil(total * p / 100)
      for _, took in ipairs(values) do
         seen = seen + merged[took]
         if seen >= want then return took end
      end
      return values[#values]
   end
   io.write(string.format("RAW count=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
      total, percentile(50), percentile(90), percentile(99), values[#values]))
end
