"""Phase 5b: RSS sampled over BENCH_SOAK_TURNS turns on a service with the default CONVERSATION_MAX."""

from __future__ import annotations

import time
from typing import Any

from common import FILL_MESSAGE
from phases import PhaseContext
from phases.memory import get_json, settle, warm_memory


def run(ctx: PhaseContext) -> dict[str, Any]:
    wrk, svc, cfg, token = ctx.wrk, ctx.svc, ctx.cfg, ctx.token
    print(f"5b. soak: {cfg.soak_turns} turns on {cfg.soak_path}, CONVERSATION_MAX 1000 ...", flush=True)
    c = cfg.concurrency
    warm_memory(wrk, svc, token, c)
    body = wrk.body("soak", {"message": FILL_MESSAGE, "conversation_id": "{id}"})
    samples = [{"turns": 0, "rss": settle(svc), "conversations": 0}]
    kind = "memory-chat" if cfg.soak_path.startswith("/memory-chat") else "chat"
    failed_total = 0
    done = 0
    started = time.perf_counter()
    while done < cfg.soak_turns:
        turns = min(cfg.soak_sample_every, cfg.soak_turns - done)
        _answered, failed, _ = wrk.quota(
            f"{svc.url}{cfg.soak_path}",
            body,
            connections=c,
            quota=turns,
            limit_s=600,
            turns="5",
            prefix=f"soak{token}",
            offset=str(done // 5),
            mark="message_count",
            tail="/health",
        )
        failed_total += failed
        done += turns
        health = get_json(f"{svc.url}/{kind}/health")
        samples.append(
            {"turns": done, "rss": settle(svc), "conversations": int(health["active_conversations"])}
        )
        print(
            f"   {done:>7} turns  RSS {samples[-1]['rss'] / 2**20:7.1f} MiB  "
            f"conversations {samples[-1]['conversations']}",
            flush=True,
        )
    usage = get_json(f"{svc.url}/chat/health").get("usage", {})
    return {
        "path": cfg.soak_path,
        "samples": samples,
        "failed": failed_total,
        "seconds": time.perf_counter() - started,
        "evictions": usage.get("evictions"),
    }
