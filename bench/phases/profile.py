"""Optional phase (BENCH_PROFILE=1): py-spy samples POST /chat/message under wrk load; summarised by frame."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, VENV_BIN, BenchError, Config
from phases import PhaseContext
from processes import PROCS, Service


def enabled(cfg: Config) -> bool:
    return cfg.profile


def ensure_py_spy() -> str:
    for candidate in (VENV_BIN / "py-spy", shutil.which("py-spy")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    print("py-spy is missing: pip install py-spy", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(VENV_BIN / "py-spy")


def _frame_name(frame: str) -> str:
    """'fn (path/to/file.py:12)' -> 'fn (file.py)' with the path shortened to the package."""
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    for marker in ("site-packages/", "lib/python3.11/", "lib/python3.12/", f"{ROOT}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


ENTRY_FRAMES = (
    "(click/core.py)",
    "(uvicorn/main.py)",
    "(uvicorn/_compat.py)",
    "(uvicorn/server.py)",
    "(uvicorn)",
    "(asyncio/runners.py)",
    "(asyncio/base_events.py)",
    "(asyncio/events.py)",
    "(uvloop/__init__.py)",
    "(threading.py)",
)


def _package(name: str) -> str:
    """'fn (django/core/handlers/asgi.py)' -> 'django'; the standard library's modules keep their name."""
    path = name.rpartition(" (")[2].rstrip(")")
    top = path.split("/", 1)[0]
    return top.removesuffix(".py") or path


def summarise_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for name in set(frames):
            inclusive[name] += count

    def ranked(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": k, "samples": v, "percent": 100.0 * v / total if total else 0.0}
            for k, v in counter.most_common(top)
        ]

    # Start-up and event-loop frames sit under nearly every sample and say nothing: leave them out.
    below_loop = Counter({k: v for k, v in inclusive.items() if not k.endswith(ENTRY_FRAMES)})
    return {
        "samples": total,
        "self": ranked(own),
        "inclusive": ranked(below_loop),
        "self_by_package": ranked(packages),
    }


def run(ctx: PhaseContext) -> dict[str, Any]:
    print(
        f"profile: py-spy for {ctx.cfg.profile_seconds} s while wrk drives POST /chat/message ...", flush=True
    )
    return profile_chat_under_load(ctx, ctx.svc, "profile.txt", prefix="prof")


def profile_chat_under_load(ctx: PhaseContext, svc: Service, raw_name: str, *, prefix: str) -> dict[str, Any]:
    """py-spy on `svc` while wrk drives POST /chat/message (new conversations) at BENCH_CONCURRENCY;
    the raw profile is kept as bench/results/<raw_name>."""
    wrk, cfg, token = ctx.wrk, ctx.cfg, ctx.token
    py_spy = ensure_py_spy()
    raw = RESULTS / raw_name
    raw.unlink(missing_ok=True)
    body = wrk.body("chat-new", {"message": "hi", "conversation_id": "{id}"})
    command = wrk.command(
        f"{svc.url}/chat/message",
        cfg.concurrency,
        cfg.profile_seconds + 4,
        body,
        {"turns": "1", "prefix": f"{prefix}{token}"},
    )
    load = PROCS.spawn(command, stdout_pipe=True)
    try:
        time.sleep(2)
        done = subprocess.run(
            [
                py_spy,
                "record",
                "--gil",  # only the thread holding the GIL: idle pool threads would drown the rest
                "--nonblocking",
                "-d",
                str(cfg.profile_seconds),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--pid",
                str(svc.pid),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=cfg.profile_seconds + 60,
        )
        out, _ = load.communicate(timeout=cfg.profile_seconds + 30)
    finally:
        PROCS.stop(load)
        with contextlib.suppress(ValueError):
            PROCS.started.remove(load)
    if done.returncode or not raw.exists():
        raise BenchError(f"py-spy failed: {done.stderr[-1500:]}")
    result = summarise_profile(raw)
    match = re.search(r"requests=(\d+) duration_us=(\d+)", out.decode(errors="replace"))
    if match:
        result["rps_while_profiled"] = int(match.group(1)) / (int(match.group(2)) / 1e6)
    result["raw"] = str(raw.relative_to(ROOT))
    return result
