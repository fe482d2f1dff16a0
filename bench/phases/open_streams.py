"""Phase: a thousand open streams at once, the gateway beside a bare Django floor, in one run.

Each target gets BENCH_OPEN_STREAMS (1,000) simultaneous streams of BENCH_OPEN_STREAM_CHUNKS (40)
chunks BENCH_CHUNK_DELAY_MS (50) apart, from bench/stream_client.py (its own process, raw sockets):
1. direct: the client reads the fake upstream itself (what the client and the fake can do at all);
2. floor: bench/floor_app.py, a bare Django StreamingHttpResponse under uvicorn that yields the same
   chunks and forwards nothing;
3. POST /chat/message with stream=true, then 4. POST /v1/chat/completions with stream=true, each on
   a fresh single-worker service with the local store.
Each target gets two rounds after a small warm-up. Memory: the server's peak VmRSS while the first
(cold) round's streams are open, over its VmRSS just before, divided by the streams. CPU: the server's
own CPU time (utime + stime from /proc/<pid>/stat) over the second (warm) round, divided by the chunks
it sent (a busy service's steady state: upstream connections pooled, memory already allocated).
Every stream must end complete, and every /chat/message turn of both rounds must be stored whole
under its own conversation.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from common import BENCH, HOST, RESULTS, BenchError, Config, env_int
from phases import PhaseContext
from processes import PROCS, Service, free_port, log_tail, start_service

TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_STREAMS = 20


def service_settings(_cfg: Config) -> dict[str, str]:
    # Room for both rounds' conversations (the default would evict the first round's, rightly).
    return {"CONVERSATION_MAX": str(4 * env_int("BENCH_OPEN_STREAMS", 1000) + 1000)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError("no VmRSS")


class PeakRss:
    """Samples a process's VmRSS every 20 ms in a thread; `peak` once stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def client(
    port: int, path: str, body: str, *, streams: int, frames: int, end: str, headers: list[str]
) -> dict[str, Any]:
    args = [sys.executable, str(BENCH / "stream_client.py"), "--port", str(port), "--path", path]
    args += ["--body", body, "--streams", str(streams), "--frames", str(frames), "--end", end]
    for header in headers:
        args += ["--header", header]
    done = subprocess.run(args, capture_output=True, check=False, timeout=600)
    if done.returncode:
        raise BenchError(f"the stream client failed:\n{done.stderr.decode()[-2000:]}")
    return dict(json.loads(done.stdout))


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def measure(
    pid: int, port: int, path: str, body: str, *, streams: int, frames: int, end: str, headers: list[str]
) -> dict[str, Any]:
    """Two rounds of `streams` at once against the server process `pid`, after a small warm-up: the
    first (cold) gives the memory per open stream, the second (warm: pooled upstream connections,
    the allocator's arenas already there, as in a service that has been busy) the CPU per chunk."""
    client(
        port,
        path,
        body.replace("{n}", "w{n}"),
        streams=WARMUP_STREAMS,
        frames=frames,
        end=end,
        headers=headers,
    )
    time.sleep(0.3)
    rss_before = rss_bytes(pid)
    with PeakRss(pid) as peak:
        cold = client(
            port, path, body.replace("{n}", "c{n}"), streams=streams, frames=frames, end=end, headers=headers
        )
    time.sleep(0.3)
    cpu_before = cpu_seconds(pid)
    run = client(port, path, body, streams=streams, frames=frames, end=end, headers=headers)
    cpu = cpu_seconds(pid) - cpu_before
    cold_failed = sum(1 for r in cold["streams"] if not (r.get("complete") and r.get("status") == "200"))
    results = run.pop("streams")
    complete = [r for r in results if r.get("complete") and r.get("status") == "200"]
    ttfb = [r["ttfb"] * 1000 for r in complete]
    gaps = [(b - a) * 1000 for r in complete for a, b in zip(r["frames"], r["frames"][1:], strict=False)]
    errors: dict[str, int] = {}
    for r in results:
        if r not in complete:
            key = r.get("error") or f"status {r.get('status')}, {len(r.get('frames', []))} frames"
            errors[key] = errors.get(key, 0) + 1
    if cold_failed:
        errors["cold round"] = cold_failed
    return {
        "streams": streams,
        "complete": len(complete) if not cold_failed else len(complete) - cold_failed,
        "errors": errors,
        "cpu_seconds": cpu,
        "cpu_us_per_chunk": cpu / (streams * frames) * 1e6,
        "rss_before": rss_before,
        "rss_peak": peak.peak,
        "kib_per_stream": (peak.peak - rss_before) / streams / 1024,
        "ttfb_ms": {"p50": _pct(ttfb, 50), "p99": _pct(ttfb, 99)} if ttfb else {},
        "gap_ms": {"p50": _pct(gaps, 50), "p99": _pct(gaps, 99)} if gaps else {},
        "wall_seconds": run["wall"],
        "client_cpu_seconds": run["cpu_seconds"],
    }


def start_floor(cfg_chunks: int, delay_ms: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = RESULTS / "floor.log"
    log.write_text("")
    env = {**os.environ, "FLOOR_CHUNKS": str(cfg_chunks), "FLOOR_DELAY_MS": str(delay_ms)}
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    proc = PROCS.spawn(
        [
            uvicorn,
            "--app-dir",
            str(BENCH),
            "floor_app:application",
            "--host",
            HOST,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        log=log,
    )
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=2.0) as http:
        while True:
            if proc.poll() is not None:
                raise BenchError(f"the floor app exited:\n{log_tail(log)}")
            try:
                if http.get(f"http://{HOST}:{port}/health").status_code == 200:
                    return proc, port
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"the floor app did not start:\n{log_tail(log)}")
            time.sleep(0.1)


def check_stored(
    svc: Service, token: str, prefix: str, streams: int, chunks: int, prefix_of_message: str = ""
) -> dict[str, int]:
    """Every turn stored whole, once, under its own conversation."""
    expected = "".join(f"tok{n} " for n in range(chunks))
    wrong = missing = 0
    with httpx.Client(base_url=svc.url, timeout=10.0, headers={"X-Client-Token": token}) as http:
        for n in range(streams):
            answer = http.get(f"/chat/conversations/{prefix}{n}")
            if answer.status_code != 200:
                missing += 1
                continue
            messages = answer.json()["conversation"]["messages"]
            said = [(m["role"], m["content"]) for m in messages]
            if said != [("user", f"open stream {prefix_of_message}{n}"), ("assistant", expected)]:
                wrong += 1
    return {"checked": streams, "missing": missing, "wrong": wrong}


def run(ctx: PhaseContext) -> dict[str, Any]:
    cfg, fake, svc = ctx.cfg, ctx.fake, ctx.svc
    streams = env_int("BENCH_OPEN_STREAMS", 1000)
    chunks = env_int("BENCH_OPEN_STREAM_CHUNKS", 40)
    delay = cfg.chunk_delay_ms
    model = f"bench/delay-{delay}-chunks-{chunks}"
    print(f"open streams: {streams} at once, {chunks} chunks {delay} ms apart ...", flush=True)
    token = "bench" + uuid.uuid4().hex * 2
    tag = uuid.uuid4().hex[:8]
    auth = [f"X-Client-Token: {token}"]
    out: dict[str, Any] = {"streams": streams, "chunks": chunks, "delay_ms": delay}

    upstream_body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "open stream {n}"}], "stream": True}
    )
    print("  direct (the client reading the fake upstream) ...", flush=True)
    out["direct"] = measure(
        fake.proc.pid,
        fake.port,
        "/api/v1/chat/completions",
        upstream_body,
        streams=streams,
        frames=chunks,
        end="[DONE]",
        headers=[],
    )
    print("  floor (bare Django StreamingHttpResponse) ...", flush=True)
    floor, floor_port = start_floor(chunks, delay)
    try:
        out["floor"] = measure(
            floor.pid,
            floor_port,
            "/stream",
            "{}",
            streams=streams,
            frames=chunks,
            end="event: done",
            headers=[],
        )
    finally:
        PROCS.stop(floor)
    print("  POST /chat/message stream=true ...", flush=True)
    chat_body = json.dumps(
        {"message": "open stream {n}", "stream": True, "model": model, "conversation_id": f"os-{tag}-{{n}}"}
    )
    out["chat"] = measure(
        svc.pid,
        svc.port,
        "/chat/message",
        chat_body,
        streams=streams,
        frames=chunks,
        end="event: done",
        headers=auth,
    )
    warm = check_stored(svc, token, f"os-{tag}-", streams, chunks)
    cold = check_stored(svc, token, f"os-{tag}-c", streams, chunks, prefix_of_message="c")
    out["chat"]["stored"] = {key: warm[key] + cold[key] for key in warm}
    print("  POST /v1/chat/completions stream=true ...", flush=True)
    v1 = start_service(fake, "open-streams-v1")
    try:
        out["v1"] = measure(
            v1.pid,
            v1.port,
            "/v1/chat/completions",
            upstream_body,
            streams=streams,
            frames=chunks,
            end="[DONE]",
            headers=[],
        )
    finally:
        PROCS.stop(v1.proc)
    floor_cpu, floor_kib = out["floor"]["cpu_us_per_chunk"], out["floor"]["kib_per_stream"]
    for key in ("chat", "v1"):
        out[key]["cpu_ratio"] = out[key]["cpu_us_per_chunk"] / floor_cpu
        out[key]["memory_ratio"] = out[key]["kib_per_stream"] / floor_kib if floor_kib > 0 else float("inf")
    return out
