"""What one Redis command costs the worker's CPU, per client: redis-py's asyncio client (the pool the
store keeps for its other commands) and the store's own pipelined script connection
(stores/redis_wire.py), on a redis-server started here on loopback, under uvloop as uvicorn runs.

    .venv/bin/python bench/redis_clients.py
"""

from __future__ import annotations

import importlib.util
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as redis
import uvloop

from processes import PROCS, ROOT, start_redis

# stores/redis_wire.py by its path: it needs nothing of Django, which the stores package would set up
_spec = importlib.util.spec_from_file_location("redis_wire", ROOT / "stores" / "redis_wire.py")
assert _spec is not None and _spec.loader is not None
redis_wire = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(redis_wire)

CALLS = 5000


class Script:
    def __init__(self, body: str) -> None:
        self.script, self.sha = body, "0" * 40


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_call(call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall µs, CPU µs) of one call, over CALLS in a row after a warm-up."""
    for _ in range(200):
        await call()
    started, used = time.perf_counter(), cpu()
    for _ in range(CALLS):
        await call()
    return (time.perf_counter() - started) / CALLS * 1e6, (cpu() - used) / CALLS * 1e6


async def main(url: str) -> None:
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=5)
    client = redis.Redis.from_pool(pool)
    wire = redis_wire.WireClient(url, timeout=3)
    script = Script("return {KEYS[1], ARGV[1]}")
    sha = await client.script_load(script.script)
    rows = {
        "redis-py PING": await per_call(client.ping),
        "redis-py EVALSHA": await per_call(lambda: client.evalsha(sha, 1, "k", "v")),
        "wire EVALSHA": await per_call(lambda: wire.evalsha(script, ["k"], ["v"])),
    }
    for name, (wall, used) in rows.items():
        print(f"{name:18} {wall:6.0f} µs wall {used:6.0f} µs CPU per call")
    wire.close()
    await client.aclose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-redis-clients-") as workdir:
        server = start_redis(Path(workdir))
        try:
            uvloop.run(main(server.url))
        finally:
            PROCS.stop(server.proc)
