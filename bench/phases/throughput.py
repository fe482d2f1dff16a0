"""Phases 2-3: requests per second on /chat/message and /v1/chat/completions at BENCH_CONCURRENCY."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from common import MODEL
from load import WrkRun
from phases import PhaseContext


def ten_messages() -> list[dict[str, str]]:
    messages = []
    for n in range(5):
        messages.append({"role": "user", "content": f"Question number {n}: what is {n} + {n}?"})
        messages.append({"role": "assistant", "content": f"{n} + {n} = {2 * n}."})
    messages[-1] = {"role": "user", "content": "hi"}
    return messages


def run(ctx: PhaseContext) -> dict[str, Any]:
    wrk, svc, cfg, token = ctx.wrk, ctx.svc, ctx.cfg, ctx.token
    c = cfg.concurrency
    print(f"2-3. throughput at concurrency {c} ...", flush=True)
    runs: dict[str, WrkRun] = {}
    chat_url = f"{svc.url}/chat/message"
    v1_url = f"{svc.url}/v1/chat/completions"
    runs["chat_new"] = wrk.measure(
        chat_url,
        wrk.body("chat-new", {"message": "hi", "conversation_id": "{id}"}),
        connections=c,
        cfg=cfg,
        turns="1",
        prefix=f"new{token}",
    )
    long_body = wrk.body("chat-long", {"message": "hi", "conversation_id": f"long-{token}"})
    runs["chat_long"] = wrk.measure(chat_url, long_body, connections=c, cfg=cfg)
    runs["v1_one_message"] = wrk.measure(
        v1_url,
        wrk.body("v1-short", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        connections=c,
        cfg=cfg,
    )
    runs["v1_ten_messages"] = wrk.measure(
        v1_url, wrk.body("v1-long", {"model": MODEL, "messages": ten_messages()}), connections=c, cfg=cfg
    )
    return {name: asdict(measured) | {"rps": measured.rps} for name, measured in runs.items()}
