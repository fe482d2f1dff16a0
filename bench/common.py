"""What every part of the bench shares: paths, the model and prompts, BenchError and the settings."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LUA = BENCH / "post.lua"
HOST = "127.0.0.1"  # every byte of load stays on loopback
VENV_BIN = Path(sys.executable).parent
MODEL = "openai/gpt-4o-mini"
SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer clearly and concisely; use Markdown code blocks for code."
)
FILL_MESSAGE = "Hello there! How are you doing today?"  # 37 characters; the echo adds 23


class BenchError(RuntimeError):
    pass


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


@dataclass(frozen=True)
class Config:
    """The BENCH_* settings (listed in bench/run.py's docstring, where README.md points)."""

    seconds: int = field(default_factory=lambda: env_int("BENCH_SECONDS", 10))
    warmup: int = field(default_factory=lambda: env_int("BENCH_WARMUP", 2))
    concurrency: int = field(default_factory=lambda: env_int("BENCH_CONCURRENCY", 16))
    stream_samples: int = field(default_factory=lambda: env_int("BENCH_STREAM_SAMPLES", 200))
    stream_runs: int = field(default_factory=lambda: env_int("BENCH_STREAM_RUNS", 5))
    chunk_delay_ms: int = field(default_factory=lambda: env_int("BENCH_CHUNK_DELAY_MS", 50))
    fill_conversations: int = field(default_factory=lambda: env_int("BENCH_FILL_CONVERSATIONS", 10000))
    soak_turns: int = field(default_factory=lambda: env_int("BENCH_SOAK_TURNS", 100000))
    soak_sample_every: int = field(default_factory=lambda: env_int("BENCH_SOAK_SAMPLE_EVERY", 20000))
    soak_path: str = field(default_factory=lambda: os.environ.get("BENCH_SOAK_PATH", "/memory-chat/message"))
    profile: bool = field(default_factory=lambda: env_int("BENCH_PROFILE", 0) > 0)
    profile_seconds: int = field(default_factory=lambda: env_int("BENCH_PROFILE_SECONDS", 10))
    baseline: str = field(default_factory=lambda: os.environ.get("BENCH_BASELINE", "").strip())
    # BENCH_BASELINE_STORE=redis: both sides of the baseline phase keep their turns in one redis-server
    baseline_store: str = field(
        default_factory=lambda: os.environ.get("BENCH_BASELINE_STORE", "local").strip() or "local"
    )
    # BENCH_ONLY=latency,throughput runs only those phases (their keys in bench/run.py); empty = all.
    only: frozenset[str] = field(
        default_factory=lambda: frozenset(
            p for p in os.environ.get("BENCH_ONLY", "").replace(" ", "").split(",") if p
        )
    )


def upstream_payload(
    messages: list[dict[str, str]], *, stream: bool = False, model: str = MODEL
) -> dict[str, Any]:
    """What the service sends upstream for a turn (so the direct baseline moves the same bytes)."""
    return {"model": model, "messages": messages, "max_tokens": 1000, "temperature": 0.7, "stream": stream}
