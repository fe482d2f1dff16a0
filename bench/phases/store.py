"""Phase 10: what the shared store (Redis) costs a turn, beside the local store, in the same run.

POST /chat/message on new conversations, one worker each: the lane's own service (local store), a
service on a redis-server on loopback, one on the same Redis behind bench/delay_proxy.py (0.5 ms each
way: a Redis 1 ms away, as a managed one is), WORKERS=2 on the loopback Redis, and one worker on a
three-master Redis Cluster on loopback (REDIS_CLUSTER=true), all running at once and measured in turns
(ROUNDS short runs each, so drift in the machine's speed hits all alike). Each figure is the median p50
at concurrency 1 and the median requests/s at BENCH_CONCURRENCY. With BENCH_PROFILE=1, py-spy samples
the loopback Redis service under load too (bench/results/profile-redis.txt).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from phases import PhaseContext
from phases.open_streams import cpu_seconds
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


ROUNDS = 3  # each service's runs, taking turns: the figures are the medians


def _turns(ctx: PhaseContext, services: dict[str, Service], redis_pid: int) -> dict[str, Any]:
    """Short runs on every service in turn, ROUNDS times (concurrency 1, then BENCH_CONCURRENCY): on a
    machine whose speed drifts from one minute to the next, only figures taken side by side compare.
    At concurrency 1 the worker's own CPU time per request is taken too, and for the loopback Redis
    the redis-server's (nothing else uses that Redis meanwhile: the other services take turns)."""
    wrk, cfg, token = ctx.wrk, ctx.cfg, ctx.token
    body = wrk.body("store-new", {"message": "hi", "conversation_id": "{id}"})
    seconds = max(2, cfg.seconds // 2)
    runs: dict[str, dict[str, list[Any]]] = {name: {"c1": [], "cn": []} for name in services}
    cpu: dict[str, list[float]] = {name: [] for name in (*services, "redis_server")}
    for name, svc in services.items():  # warm-up, discarded
        wrk.run(
            f"{svc.url}/chat/message",
            body,
            connections=cfg.concurrency,
            seconds=2,
            turns="1",
            prefix=f"sw{name}{token}",
        )
    for n in range(ROUNDS):
        for connections, lane in ((1, "c1"), (cfg.concurrency, "cn")):
            for name, svc in services.items():
                before = (svc.cpu_seconds(), cpu_seconds(redis_pid))
                run = wrk.run(
                    f"{svc.url}/chat/message",
                    body,
                    connections=connections,
                    seconds=seconds,
                    turns="1",
                    prefix=f"s{lane}{n}{name}{token}",
                )
                runs[name][lane].append(run)
                if connections == 1 and run.requests:
                    cpu[name].append((svc.cpu_seconds() - before[0]) / run.requests * 1e6)
                    if name == "redis":
                        cpu["redis_server"].append((cpu_seconds(redis_pid) - before[1]) / run.requests * 1e6)
    results: dict[str, Any] = {}
    for name, lanes in runs.items():
        errors: dict[str, int] = {}
        for run in lanes["c1"] + lanes["cn"]:
            for kind, count in run.errors.items():
                errors[kind] = errors.get(kind, 0) + count
        results[name] = {
            "p50_ms": statistics.median(r.raw_p50_ms or r.p50_ms for r in lanes["c1"]),
            "cpu_us_c1": statistics.median(cpu[name]) if cpu[name] else None,
            "rps": statistics.median(r.rps for r in lanes["cn"]),
            "c1": {
                "errors": {k: v for k, v in errors.items() if k},
                "runs": [asdict(r) for r in lanes["c1"]],
            },
            "cn": {"errors": {}, "runs": [asdict(r) | {"rps": r.rps} for r in lanes["cn"]]},
        }
    if cpu["redis_server"]:
        results["redis_server_cpu_us_c1"] = statistics.median(cpu["redis_server"])
    return results


def _profile(ctx: PhaseContext, svc: Service) -> dict[str, Any]:
    return profile_chat_under_load(ctx, svc, "profile-redis.txt", prefix="sp")


def run(ctx: PhaseContext) -> dict[str, Any]:
    print(
        "10. the shared store: local, Redis on loopback, 1 ms away, WORKERS=2, a cluster, taking turns ...",
        flush=True,
    )
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as running, tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        redis = start_redis(Path(workdir))
        running.callback(PROCS.stop, redis.proc)
        results["redis_rtt_ms"] = redis_round_trip_ms(redis.port)
        # A round trip after both sides slept (at concurrency 1, Redis and the worker idle between a
        # turn's round trips): waking an idle virtual CPU is most of what a round trip costs here.
        results["redis_idle_rtt_ms"] = redis_round_trip_ms(redis.port, idle_ms=2.0)
        proxy, proxy_port = start_delay_proxy(redis.port, DELAY_MS)
        running.callback(PROCS.stop, proxy)
        results["far_rtt_ms"] = redis_round_trip_ms(proxy_port)
        cluster = start_redis_cluster(Path(workdir))
        running.callback(cluster.stop)
        services = {"local": ctx.svc}
        for name, svc in (
            ("redis", start_service(ctx.fake, "store-redis", REDIS_URL=redis.url)),
            (
                "redis_far",
                start_service(ctx.fake, "store-redis-far", REDIS_URL=f"redis://127.0.0.1:{proxy_port}/0"),
            ),
            ("redis_two_workers", start_service(ctx.fake, "store-redis-2", workers=2, REDIS_URL=redis.url)),
            (
                "redis_cluster",
                start_service(ctx.fake, "store-cluster", REDIS_URL=cluster.url, REDIS_CLUSTER="true"),
            ),
        ):
            running.callback(PROCS.stop, svc.proc)
            services[name] = svc
        results |= _turns(ctx, services, redis.proc.pid)
        if ctx.cfg.profile:
            results["profile"] = _profile(ctx, services["redis"])
    return results
