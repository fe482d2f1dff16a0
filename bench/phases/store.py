"""Phase 10: what the shared store (Redis) costs a turn, beside the local store, in the same run.

POST /chat/message on new conversations, one worker each: the lane's own service (local store), then a
service on a redis-server on loopback, then on the same Redis behind bench/delay_proxy.py (0.5 ms each
way: a Redis 1 ms away, as a managed one is), then WORKERS=2 on the loopback Redis, then one worker on
a three-master Redis Cluster on loopback (REDIS_CLUSTER=true). Each figure is p50 at concurrency 1 and
requests/s at BENCH_CONCURRENCY. With BENCH_PROFILE=1, py-spy samples the loopback Redis service under
load too (bench/results/profile-redis.txt).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from phases import PhaseContext
from phases.profile import profile_chat_under_load
from processes import (
    PROCS,
    Service,
    redis_round_trip_ms,
    start_delay_proxy,
    start_redis,
    start_redis_cluster,
    start_service,
)

DELAY_MS = 0.5  # each way


def _measure(ctx: PhaseContext, svc: Service, name: str) -> dict[str, Any]:
    wrk, cfg, token = ctx.wrk, ctx.cfg, ctx.token
    body = wrk.body("store-new", {"message": "hi", "conversation_id": "{id}"})
    url = f"{svc.url}/chat/message"
    one = wrk.measure(url, body, connections=1, cfg=cfg, turns="1", prefix=f"s1{name}{token}")
    many = wrk.measure(url, body, connections=cfg.concurrency, cfg=cfg, turns="1", prefix=f"sn{name}{token}")
    return {
        "c1": asdict(one) | {"rps": one.rps},
        "cn": asdict(many) | {"rps": many.rps},
        "p50_ms": one.raw_p50_ms or one.p50_ms,
        "rps": many.rps,
    }


def _profile(ctx: PhaseContext, svc: Service) -> dict[str, Any]:
    return profile_chat_under_load(ctx, svc, "profile-redis.txt", prefix="sp")


def run(ctx: PhaseContext) -> dict[str, Any]:
    print("10. the shared store: local, Redis on loopback, 1 ms away, WORKERS=2, a cluster ...", flush=True)
    results: dict[str, Any] = {"local": _measure(ctx, ctx.svc, "local")}
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        redis = start_redis(Path(workdir))
        try:
            results["redis_rtt_ms"] = redis_round_trip_ms(redis.port)
            svc = start_service(ctx.fake, "store-redis", REDIS_URL=redis.url)
            try:
                results["redis"] = _measure(ctx, svc, "redis")
                if ctx.cfg.profile:
                    results["profile"] = _profile(ctx, svc)
            finally:
                PROCS.stop(svc.proc)
            proxy, proxy_port = start_delay_proxy(redis.port, DELAY_MS)
            try:
                results["far_rtt_ms"] = redis_round_trip_ms(proxy_port)
                svc = start_service(
                    ctx.fake, "store-redis-far", REDIS_URL=f"redis://127.0.0.1:{proxy_port}/0"
                )
                try:
                    results["redis_far"] = _measure(ctx, svc, "far")
                finally:
                    PROCS.stop(svc.proc)
            finally:
                PROCS.stop(proxy)
            svc = start_service(ctx.fake, "store-redis-2", workers=2, REDIS_URL=redis.url)
            try:
                results["redis_two_workers"] = _measure(ctx, svc, "two")
            finally:
                PROCS.stop(svc.proc)
        finally:
            PROCS.stop(redis.proc)
        cluster = start_redis_cluster(Path(workdir))
        try:
            svc = start_service(ctx.fake, "store-cluster", REDIS_URL=cluster.url, REDIS_CLUSTER="true")
            try:
                results["redis_cluster"] = _measure(ctx, svc, "cluster")
            finally:
                PROCS.stop(svc.proc)
        finally:
            cluster.stop()
    return results
