"""Phase 9: /v1/responses (non-streaming, continuing a previous_response_id chain) beside
/v1/chat/completions sending the same context: added latency at concurrency 1 against the fake
upstream called directly, and requests per second at BENCH_CONCURRENCY.

Every measured request continues the same three-turn chain (stored: `store` is left at its default),
so each one reads the chain's three stored responses, sends seven messages upstream and writes a
response of its own. The lane's service keeps up to CHAIN_STORE responses in up to CHAIN_BYTES, a
client's too, so the chain is never evicted by the responses the run itself writes (with the default
CONVERSATION_MAX it would be, after 1,000 of them; with the default STORE_MAX_BYTES, which stored
responses share with conversations, after some 15,000; and with the default CLIENT_STORAGE_BYTES, the
quota of the one client the load comes from, after some 2,000).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import httpx

from common import MODEL, BenchError, Config
from phases import PhaseContext

REPLY = "Hello! This is the benchmark's fake upstream answering."  # bench/fake_upstream.py's REPLY
CHAIN_TURNS = 3
CHAIN_STORE = "1000000"
CHAIN_BYTES = "2GiB"


def service_settings(cfg: Config) -> dict[str, str]:
    return {
        "CONVERSATION_MAX": CHAIN_STORE,
        "STORE_MAX_BYTES": CHAIN_BYTES,
        "CLIENT_STORAGE_BYTES": CHAIN_BYTES,
    }


def build_chain(url: str) -> str:
    """Three stored responses, each continuing the one before; the last one's id."""
    previous = None
    with httpx.Client(timeout=10) as client:
        for _ in range(CHAIN_TURNS):
            body: dict[str, Any] = {"model": MODEL, "input": "hi"}
            if previous:
                body["previous_response_id"] = previous
            answer = client.post(f"{url}/v1/responses", json=body)
            if answer.status_code != 200 or answer.json().get("output_text") != REPLY:
                raise BenchError(f"POST /v1/responses answered {answer.status_code}: {answer.text[:300]}")
            previous = answer.json()["id"]
    assert previous is not None
    return previous


def chain_messages() -> list[dict[str, str]]:
    """What the service sends upstream for a response continuing the chain: the same for both APIs."""
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": REPLY}]
    return turn * CHAIN_TURNS + [{"role": "user", "content": "hi"}]


def run(ctx: PhaseContext) -> dict[str, Any]:
    wrk, svc, fake, cfg = ctx.wrk, ctx.svc, ctx.fake, ctx.cfg
    print("9. /v1/responses with a previous_response_id chain, beside /v1/chat/completions ...", flush=True)
    head = build_chain(svc.url)
    bodies = {
        "direct": wrk.body("responses-direct", {"model": MODEL, "messages": chain_messages()}),
        "responses": wrk.body(
            "responses-chain", {"model": MODEL, "input": "hi", "previous_response_id": head}
        ),
        "completions": wrk.body("responses-completions", {"model": MODEL, "messages": chain_messages()}),
    }
    urls = {
        "direct": f"{fake.base}/chat/completions",
        "responses": f"{svc.url}/v1/responses",
        "completions": f"{svc.url}/v1/chat/completions",
    }
    results: dict[str, Any] = {}
    for name in ("direct", "responses", "completions"):
        measured = wrk.measure(urls[name], bodies[name], connections=1, cfg=cfg)
        results[f"{name}_c1"] = asdict(measured) | {"rps": measured.rps}
    for name in ("responses", "completions"):
        measured = wrk.measure(urls[name], bodies[name], connections=cfg.concurrency, cfg=cfg)
        results[f"{name}_load"] = asdict(measured) | {"rps": measured.rps}
    direct = results["direct_c1"]
    for name in ("responses", "completions"):
        for q in ("50", "99"):
            service = results[f"{name}_c1"][f"raw_p{q}_ms"] or 0.0
            results[f"{name}_added_p{q}_ms"] = service - (direct[f"raw_p{q}_ms"] or 0.0)
    return results
