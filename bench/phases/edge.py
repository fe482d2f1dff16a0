"""Phase 8: the ASGI edge alternative (ASGI_EDGE=thread, a subclassed handler) beside row 2."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from common import Config
from phases import PhaseContext


def service_settings(cfg: Config) -> dict[str, str]:
    return {"ASGI_EDGE": "thread"}


def run(ctx: PhaseContext) -> dict[str, Any]:
    wrk, svc, cfg, token = ctx.wrk, ctx.svc, ctx.cfg, ctx.token
    print("8. ASGI edge: the subclassed handler (one shared thread per close) ...", flush=True)
    url = f"{svc.url}/chat/message"
    runs = {}
    for connections in (1, cfg.concurrency):
        measured = wrk.measure(
            url,
            wrk.body(f"edge-{connections}", {"message": "hi", "conversation_id": "{id}"}),
            connections=connections,
            cfg=cfg,
            turns="1",
            prefix=f"edge{connections}{token}",
        )
        runs[f"c{connections}"] = asdict(measured) | {"rps": measured.rps}
    return runs
