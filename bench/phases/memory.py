"""Phase 5a: RSS per stored conversation after a fill of BENCH_FILL_CONVERSATIONS; helpers the soak shares."""

from __future__ import annotations

import time
from typing import Any

import httpx

from common import FILL_MESSAGE, Config
from load import Wrk
from phases import PhaseContext
from processes import Service


def conversation_max(cfg: Config) -> int:
    """The fill's service keeps every conversation it is sent."""
    return max(20000, 2 * cfg.fill_conversations)


def service_settings(cfg: Config) -> dict[str, str]:
    # One client fills the store: no byte bound or quota may evict what is being measured.
    return {
        "CONVERSATION_MAX": str(conversation_max(cfg)),
        "STORE_MAX_BYTES": "16GiB",
        "CLIENT_STORAGE_BYTES": "0",
    }


def get_json(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=10.0)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def settle(svc: Service) -> int:
    """RSS once the process has gone quiet for a moment."""
    time.sleep(0.5)
    return svc.rss()


def warm_memory(wrk: Wrk, svc: Service, token: str, c: int) -> None:
    """Exercise the echo path without leaving conversations behind, so 'before' has the code warm."""
    body = wrk.body("memory-fill", {"message": FILL_MESSAGE, "conversation_id": "{id}"})
    wrk.quota(
        f"{svc.url}/memory-chat/message",
        body,
        connections=c,
        quota=1000,
        limit_s=120,
        turns="5",
        prefix=f"warm{token}",
        mark="message_count",
        tail="/health",
    )
    httpx.delete(f"{svc.url}/memory-chat/conversations", timeout=10.0).raise_for_status()


def run(ctx: PhaseContext) -> dict[str, Any]:
    wrk, svc, cfg, token = ctx.wrk, ctx.svc, ctx.cfg, ctx.token
    convs = cfg.fill_conversations
    print(f"5a. memory: {convs} conversations of 10 messages ...", flush=True)
    c = cfg.concurrency
    warm_memory(wrk, svc, token, c)
    before = settle(svc)
    body = wrk.body("memory-fill", {"message": FILL_MESSAGE, "conversation_id": "{id}"})
    answered, failed, seconds = wrk.quota(
        f"{svc.url}/memory-chat/message",
        body,
        connections=c,
        quota=convs * 5,
        limit_s=600,
        turns="5",
        prefix=f"fill{token}",
        mark="message_count",
        tail="/health",
    )
    after = settle(svc)
    stored = int(get_json(f"{svc.url}/memory-chat/health")["active_conversations"])
    return {
        "conversations": convs,
        "stored": stored,
        "turns": answered,
        "failed": failed,
        "seconds": seconds,
        "rps": answered / seconds if seconds else 0.0,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_conversation": (after - before) / convs,
        "message_chars": len(FILL_MESSAGE),
        "conversation_max": conversation_max(cfg),
    }
