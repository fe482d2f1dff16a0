"""Phase 4: streaming, time to the first frame and the spacing of frames, service against direct."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import httpx

from common import SYSTEM_PROMPT, upstream_payload
from load import service_delta, stream_frames, upstream_delta
from phases import PhaseContext


def _gaps(arrivals: list[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]


def _spread(values: list[float]) -> dict[str, float]:
    deciles = statistics.quantiles(values, n=10) if len(values) > 1 else [values[0]] * 9
    return {
        "median": statistics.median(values),
        "p10": deciles[0],
        "p90": deciles[-1],
        "min": min(values),
        "max": max(values),
        "count": len(values),
    }


def run(ctx: PhaseContext) -> dict[str, Any]:
    svc, fake, cfg = ctx.svc, ctx.fake, ctx.cfg
    print("4. streaming: time to first frame and frame spacing ...", flush=True)
    direct_url = f"{fake.base}/chat/completions"
    chat_url = f"{svc.url}/chat/message"
    user = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "hi"}]
    fast_model = "bench/delay-0-chunks-10"
    slow_model = f"bench/delay-{cfg.chunk_delay_ms}-chunks-10"
    ttfb_direct: list[float] = []
    ttfb_service: list[float] = []
    with httpx.Client(timeout=30.0) as client:
        for n in range(20 + cfg.stream_samples):  # the first 20 of each warm up
            d = stream_frames(
                client, direct_url, upstream_payload(user, stream=True, model=fast_model), upstream_delta
            )
            s = stream_frames(
                client, chat_url, {"message": "hi", "stream": True, "model": fast_model}, service_delta
            )
            if n >= 20:
                ttfb_direct.append(d[0] * 1000)
                ttfb_service.append(s[0] * 1000)
        gaps_service: list[float] = []
        gaps_direct: list[float] = []
        for _ in range(cfg.stream_runs):
            gaps_service += _gaps(
                stream_frames(
                    client, chat_url, {"message": "hi", "stream": True, "model": slow_model}, service_delta
                )
            )
        for _ in range(max(1, cfg.stream_runs // 2)):
            gaps_direct += _gaps(
                stream_frames(
                    client, direct_url, upstream_payload(user, stream=True, model=slow_model), upstream_delta
                )
            )
    return {
        "ttfb_direct_ms": _spread(ttfb_direct),
        "ttfb_service_ms": _spread(ttfb_service),
        "ttfb_added_ms": statistics.median(ttfb_service) - statistics.median(ttfb_direct),
        "chunk_delay_ms": cfg.chunk_delay_ms,
        "gap_service_ms": _spread(gaps_service),
        "gap_direct_ms": _spread(gaps_direct),
    }
