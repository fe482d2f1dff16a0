"""Load generators: wrk (installed when missing) driven through bench/post.lua, and an httpx stream client."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from common import LUA, BenchError, Config
from processes import PROCS

# ---------------------------------------------------------------------------------------------------
# wrk


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing and this is not root: run `sudo apt-get install -y wrk`, then again")
    print("wrk is missing: apt-get update && apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk but it is not on PATH")
    return found


@dataclass
class WrkRun:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int]
    # Timed per request by the Lua script (one connection only): wrk's own percentiles are corrected
    # for coordinated omission, which on a closed-loop run adds made-up samples to the tail.
    raw_p50_ms: float | None = None
    raw_p90_ms: float | None = None
    raw_p99_ms: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class Wrk:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir

    def body(self, name: str, value: Any) -> Path:
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(value, separators=(",", ":")))
        return path

    def command(
        self, url: str, connections: int, seconds: int, body: Path, args: dict[str, str]
    ) -> list[str]:
        extra = [f"{k}={v}" for k, v in args.items()]
        return [
            self.binary,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            f"body={body}",
            *extra,
        ]

    def _exec(self, command: list[str], timeout: float) -> str:
        proc = PROCS.spawn(command, env=dict(os.environ), stdout_pipe=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"wrk ran past {timeout:.0f} s: {' '.join(command)}") from None
        finally:
            PROCS.stop(proc)
            with contextlib.suppress(ValueError):
                PROCS.started.remove(proc)
        return out.decode(errors="replace")

    def run(self, url: str, body: Path, *, connections: int, seconds: int, **args: str) -> WrkRun:
        if connections == 1:
            args = {**args, "raw": "1"}
        out = self._exec(self.command(url, connections, seconds, body, args), timeout=seconds + 30)
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise BenchError(f"wrk printed no RESULT line:\n{out[-2000:]}")
        f = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
        raw_line = next((x for x in out.splitlines() if x.startswith("RAW ")), "")
        raw = {k: float(v) / 1000 for k, v in re.findall(r"(p\d+)_us=([\d.]+)", raw_line)}
        return WrkRun(
            requests=int(f["requests"]),
            seconds=f["duration_us"] / 1e6,
            p50_ms=f["p50_us"] / 1000,
            p90_ms=f["p90_us"] / 1000,
            p99_ms=f["p99_us"] / 1000,
            mean_ms=f["mean_us"] / 1000,
            max_ms=f["max_us"] / 1000,
            errors={k: int(f[k]) for k in ("connect", "read", "write", "timeout", "status") if f[k]},
            raw_p50_ms=raw.get("p50"),
            raw_p90_ms=raw.get("p90"),
            raw_p99_ms=raw.get("p99"),
        )

    def measure(self, url: str, body: Path, *, connections: int, cfg: Config, **args: str) -> WrkRun:
        """A warm-up run (discarded), then the measured one."""
        if cfg.warmup > 0:
            self.run(url, body, connections=connections, seconds=cfg.warmup, **args)
        return self.run(url, body, connections=connections, seconds=cfg.seconds, **args)

    def quota(
        self, url: str, body: Path, *, connections: int, quota: int, limit_s: int, **args: str
    ) -> tuple[int, int, float]:
        """Send exactly `quota` POSTs; (answered, failed, seconds)."""
        started = time.perf_counter()
        command = self.command(url, connections, limit_s, body, {**args, "quota": str(quota)})
        out = self._exec(command, timeout=limit_s + 30)
        match = re.search(r"QUOTA answered=(\d+) failed=(\d+)", out)
        if match is None:
            raise BenchError(f"wrk did not finish its {quota} requests within {limit_s} s:\n{out[-2000:]}")
        return int(match.group(1)), int(match.group(2)), time.perf_counter() - started


# ---------------------------------------------------------------------------------------------------
# streams, read frame by frame with httpx


def stream_frames(
    client: httpx.Client, url: str, body: dict[str, Any], is_content: Callable[[bytes], bool]
) -> list[float]:
    """Seconds from sending the request to each content frame's arrival."""
    started = time.perf_counter()
    arrivals: list[float] = []
    buffer = b""
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            raise BenchError(f"POST {url} answered {response.status_code}: {response.read()[:300]!r}")
        for chunk in response.iter_raw():
            now = time.perf_counter() - started
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                if is_content(frame):
                    arrivals.append(now)
    if not arrivals:
        raise BenchError(f"POST {url} streamed no content frame")
    return arrivals


def service_delta(frame: bytes) -> bool:
    return frame.startswith(b"event: delta")


def upstream_delta(frame: bytes) -> bool:
    return frame.startswith(b"data: {") and b'"content":"tok' in frame
