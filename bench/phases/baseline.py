"""Optional phase (BENCH_BASELINE=<git revision>): this checkout beside another, taking turns.

On a machine whose speed drifts by tens of percent from one hour to the next, a figure is only
comparable with one taken in the same minutes. This phase checks the revision out into a temporary
worktree, starts it (plain uvicorn, the same fake upstream and settings) beside this lane's service,
and alternates short concurrency-1 runs of POST /chat/message on each: the medians of their added
latency and of each process's own CPU time per request. With BENCH_BASELINE_STORE=redis both keep
their turns in one redis-server on loopback (in databases of their own), for a change to the Redis path.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from common import HOST, ROOT, SYSTEM_PROMPT, BenchError, Config, upstream_payload
from phases import PhaseContext
from processes import PROCS, Service, start_redis, start_service

ROUNDS = 4


def enabled(cfg: Config) -> bool:
    return bool(cfg.baseline)


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def _round(ctx: PhaseContext, svc: Service, body: Path, seconds: int, prefix: str) -> tuple[float, float]:
    before = svc.cpu_seconds()
    run = ctx.wrk.run(
        f"{svc.url}/chat/message", body, connections=1, seconds=seconds, turns="1", prefix=prefix
    )
    if run.errors or not run.requests:
        raise BenchError(f"{svc.url}: {run.errors or 'no requests answered'}")
    return run.raw_p50_ms or run.p50_ms, 1e6 * (svc.cpu_seconds() - before) / run.requests


def run(ctx: PhaseContext) -> dict[str, Any]:
    cfg, wrk = ctx.cfg, ctx.wrk
    revision = _git("rev-parse", "--short", cfg.baseline)
    print(f"B. this checkout beside {revision}, taking turns ...", flush=True)
    direct_body = wrk.body(
        "baseline-direct",
        upstream_payload([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "hi"}]),
    )
    direct = wrk.run(f"{ctx.fake.base}/chat/completions", direct_body, connections=1, seconds=3)
    direct_p50 = direct.raw_p50_ms or direct.p50_ms
    body = wrk.body("baseline-chat", {"message": "hi", "conversation_id": "{id}"})
    seconds = max(2, cfg.seconds // 2)
    with contextlib.ExitStack() as running, tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        checkout = Path(tmp) / "checkout"
        _git("worktree", "add", "--detach", str(checkout), revision)
        running.callback(_git, "worktree", "remove", "--force", str(checkout))
        this, stores = ctx.svc, [{}, {}]
        if cfg.baseline_store == "redis":
            redis = start_redis(Path(tmp))
            running.callback(PROCS.stop, redis.proc)
            stores = [{"REDIS_URL": f"redis://{HOST}:{redis.port}/{db}"} for db in (0, 1)]
            this = start_service(ctx.fake, "baseline-this", **stores[0])
            running.callback(PROCS.stop, this.proc)
        other = start_service(ctx.fake, "baseline", checkout=checkout, **stores[1])
        running.callback(PROCS.stop, other.proc)
        figures: dict[str, list[tuple[float, float]]] = {"this": [], "baseline": []}
        for n in range(ROUNDS):
            for name, svc in (("this", this), ("baseline", other)):
                figures[name].append(_round(ctx, svc, body, seconds, f"b{n}{name[0]}{ctx.token}"))
    return {
        "revision": revision,
        "store": cfg.baseline_store,
        "rounds": ROUNDS,
        "seconds_each": seconds,
        "direct_p50_ms": direct_p50,
        **{
            name: {
                "added_p50_ms": statistics.median(p50 for p50, _ in runs) - direct_p50,
                "cpu_us_per_request": statistics.median(cpu for _, cpu in runs),
                "runs": runs,
            }
            for name, runs in figures.items()
        },
    }
