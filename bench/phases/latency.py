"""Phase 1: the service's added latency at concurrency 1, against the fake upstream called directly."""

from __future__ import annotations

import functools
from dataclasses import asdict
from typing import Any

from common import SYSTEM_PROMPT, upstream_payload
from phases import PhaseContext


def run(ctx: PhaseContext) -> dict[str, Any]:
    wrk, svc, fake, cfg, token = ctx.wrk, ctx.svc, ctx.fake, ctx.cfg, ctx.token
    print("1. added latency at concurrency 1 ...", flush=True)
    direct_body = wrk.body(
        "direct",
        upstream_payload([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "hi"}]),
    )
    chat_body = wrk.body("chat-new", {"message": "hi", "conversation_id": "{id}"})
    direct = wrk.measure(f"{fake.base}/chat/completions", direct_body, connections=1, cfg=cfg)
    chat = functools.partial(wrk.run, f"{svc.url}/chat/message", chat_body, connections=1, turns="1")
    if cfg.warmup > 0:
        chat(seconds=cfg.warmup, prefix=f"w{token}")
    cpu_before = svc.cpu_seconds()  # the measured run alone, not its warm-up
    service = chat(seconds=cfg.seconds, prefix=f"lat{token}")
    cpu_used = svc.cpu_seconds() - cpu_before
    return {
        "direct": asdict(direct) | {"rps": direct.rps},
        "service": asdict(service) | {"rps": service.rps},
        # The service's own CPU time per answered request: steadier than wall-clock latency on a busy machine.
        "service_cpu_us_per_request": 1e6 * cpu_used / max(1, service.requests),
        "added_p50_ms": (service.raw_p50_ms or 0.0) - (direct.raw_p50_ms or 0.0),
        "added_p99_ms": (service.raw_p99_ms or 0.0) - (direct.raw_p99_ms or 0.0),
        "wrk_corrected_added_p50_ms": service.p50_ms - direct.p50_ms,
        "wrk_corrected_added_p99_ms": service.p99_ms - direct.p99_ms,
    }
