"""Phase: a thousand open streams at once, the gateway beside a bare Django floor, in one run.

Each target gets BENCH_OPEN_STREAMS (1,000) simultaneous streams of BENCH_OPEN_STREAM_CHUNKS (40)
chunks BENCH_CHUNK_DELAY_MS (50) apart, from bench/stream_client.py (its own process, raw sockets):
1. direct: the client reads the fake upstream itself (what the client and the fake can do at all);
2. floor: bench/floor_app.py, a bare Django StreamingHttpResponse under uvicorn that yields the same
   chunks and forwards nothing;
3. relay: the same app (its own process) relaying the fake upstream's bytes with aiohttp, unparsed:
   the least a relay on the gateway's libraries spends;
4. POST /chat/message with stream=true, then 5. POST /v1/chat/completions with stream=true, each on
   a fresh single-worker service with the local store.
All five run at once. Each target gets a small warm-up and a cold round, then WARM_ROUNDS warm rounds,
the targets taking turns. Memory: the server's peak VmRSS while the cold round's streams are open,
over its VmRSS just before, divided by the streams. CPU: the server's own CPU time (utime + stime from
/proc/<pid>/stat) over a warm round, divided by the chunks it sent (a busy service's steady state:
upstream connections pooled, memory already allocated); the median of the warm rounds. Every stream
must end complete, and every /chat/message turn of every round must be stored whole under its own
conversation.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from common import BENCH, HOST, RESULTS, BenchError, Config, env_int
from phases import PhaseContext
from processes import PROCS, Service, free_port, log_tail, start_service

TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_STREAMS = 20


def service_settings(_cfg: Config) -> dict[str, str]:
    # Room for every round's conversations (the defaults would evict the first rounds', rightly: all
    # come from one address, one client, whose CLIENT_STORAGE_BYTES is 8 MiB).
    return {
        "CONVERSATION_MAX": str(6 * env_int("BENCH_OPEN_STREAMS", 1000) + 1000),
        "CLIENT_STORAGE_BYTES": "64MiB",
    }


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
    port: int,
    path: str,
    body: str,
    *,
    streams: int,
    frames: int,
    end: str,
    headers: list[str],
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    args = [sys.executable, str(BENCH / "stream_client.py"), "--port", str(port), "--path", path]
    args += ["--body", body, "--streams", str(streams), "--frames", str(frames), "--end", end]
    for header in headers:
        args += ["--header", header]
    pinned = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    done = subprocess.run(args, capture_output=True, check=False, timeout=600, preexec_fn=pinned)
    if done.returncode:
        raise BenchError(f"the stream client failed:\n{done.stderr.decode()[-2000:]}")
    return dict(json.loads(done.stdout))


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def set_cpus(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (a thread started later inherits its creator's)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.sched_setaffinity(int(task.name), cpus)


@contextlib.contextmanager
def alone(pid: int, beside: list[int]) -> Iterator[set[int] | None]:
    """With BENCH_PIN=1, the server `pid` on CPU 1 alone, and `beside` (the fake upstream; the client
    takes the CPUs yielded) on CPU 0: the server's CPU time is then its own work, not also the cost of
    sharing a core with the load it serves. Otherwise nothing moves."""
    if not env_int("BENCH_PIN", 0):
        yield None
        return
    for other in beside:
        set_cpus(other, {0})
    set_cpus(pid, {1})
    try:
        yield {0}
    finally:
        for moved in (*beside, pid):
            set_cpus(moved, {0, 1})


WARM_ROUNDS = 3  # warm rounds of each target, taking turns: the CPU figure is their median


@dataclass
class Target:
    """One server the streams go to: its process, port, path, body ({n}: the stream's number), the
    text its last frame holds, and the headers each request carries."""

    name: str
    pid: int
    port: int
    path: str
    body: str
    end: str
    headers: list[str]
    beside: tuple[int, ...] = ()  # the processes it needs to answer (the fake upstream)

    def round(self, streams: int, frames: int, tag: str, cpus: set[int] | None = None) -> dict[str, Any]:
        return client(
            self.port,
            self.path,
            self.body.replace("{n}", tag + "{n}"),
            streams=streams,
            frames=frames,
            end=self.end,
            headers=self.headers,
            cpus=cpus,
        )


def _cold(target: Target, streams: int, frames: int) -> dict[str, Any]:
    """A small warm-up, then the first (cold) round: memory per open stream, from its peak VmRSS."""
    target.round(WARMUP_STREAMS, frames, "w")
    time.sleep(0.3)
    rss_before = rss_bytes(target.pid)
    with PeakRss(target.pid) as peak:
        cold = target.round(streams, frames, "c")
    failed = sum(1 for r in cold["streams"] if not (r.get("complete") and r.get("status") == "200"))
    return {
        "rss_before": rss_before,
        "rss_peak": peak.peak,
        "kib_per_stream": (peak.peak - rss_before) / streams / 1024,
        "cold_failed": failed,
    }


def _warm(target: Target, streams: int, frames: int, tag: str) -> dict[str, Any]:
    """One warm round (upstream connections pooled, the allocator's arenas there, as in a service that
    has been busy): the server's own CPU per chunk sent, and each stream's timings."""
    time.sleep(0.3)
    with alone(target.pid, list(target.beside)) as cpus:
        before = cpu_seconds(target.pid)
        run = target.round(streams, frames, tag, cpus)
        cpu = cpu_seconds(target.pid) - before
    return {"cpu": cpu, "run": run}


def _figures(streams: int, frames: int, cold: dict[str, Any], warm: list[dict[str, Any]]) -> dict[str, Any]:
    results = [r for w in warm for r in w["run"]["streams"]]
    complete = [r for r in results if r.get("complete") and r.get("status") == "200"]
    ttfb = [r["ttfb"] * 1000 for r in complete]
    gaps = [(b - a) * 1000 for r in complete for a, b in zip(r["frames"], r["frames"][1:], strict=False)]
    errors: dict[str, int] = {}
    for r in results:
        if r not in complete:
            key = r.get("error") or f"status {r.get('status')}, {len(r.get('frames', []))} frames"
            errors[key] = errors.get(key, 0) + 1
    if cold["cold_failed"]:
        errors["cold round"] = cold["cold_failed"]
    per_chunk = [w["cpu"] / (streams * frames) * 1e6 for w in warm]
    return {
        "streams": streams,
        "rounds": len(warm),
        # every stream of every round (the cold one too) complete, counted as one round's worth
        "complete": streams if not errors else streams - sum(errors.values()),
        "errors": errors,
        "cpu_seconds": statistics.median(w["cpu"] for w in warm),
        "cpu_us_per_chunk": statistics.median(per_chunk),
        "cpu_us_per_chunk_rounds": per_chunk,
        "rss_before": cold["rss_before"],
        "rss_peak": cold["rss_peak"],
        "kib_per_stream": cold["kib_per_stream"],
        "ttfb_ms": {"p50": _pct(ttfb, 50), "p99": _pct(ttfb, 99)} if ttfb else {},
        "gap_ms": {"p50": _pct(gaps, 50), "p99": _pct(gaps, 99)} if gaps else {},
        "wall_seconds": statistics.median(w["run"]["wall"] for w in warm),
        "client_cpu_seconds": statistics.median(w["run"]["cpu_seconds"] for w in warm),
    }


def measure(targets: list[Target], *, streams: int, frames: int) -> dict[str, dict[str, Any]]:
    """Each target's cold round, then WARM_ROUNDS warm rounds of every target in turn: on a machine
    whose speed drifts from one minute to the next, only figures taken side by side compare."""
    colds = {t.name: _cold(t, streams, frames) for t in targets}
    warm: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for n in range(WARM_ROUNDS):
        for target in targets:
            warm[target.name].append(_warm(target, streams, frames, f"r{n}"))
    return {t.name: _figures(streams, frames, colds[t.name], warm[t.name]) for t in targets}


def start_floor(
    cfg_chunks: int, delay_ms: int, *, upstream: str = "", name: str = "floor"
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = RESULTS / f"{name}.log"
    log.write_text("")
    env = {**os.environ, "FLOOR_CHUNKS": str(cfg_chunks), "FLOOR_DELAY_MS": str(delay_ms)}
    env["FLOOR_UPSTREAM"] = upstream
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
    print(f"open streams: {streams} at once, {chunks} chunks {delay} ms apart, taking turns ...", flush=True)
    token = "bench" + uuid.uuid4().hex * 2
    tag = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {"streams": streams, "chunks": chunks, "delay_ms": delay}
    out["pinned"] = bool(env_int("BENCH_PIN", 0))
    upstream_body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "open stream {n}"}], "stream": True}
    )
    chat_body = json.dumps(
        {"message": "open stream {n}", "stream": True, "model": model, "conversation_id": f"os-{tag}-{{n}}"}
    )
    floor, floor_port = start_floor(chunks, delay)
    relay, relay_port = start_floor(chunks, delay, upstream=fake.base, name="relay-floor")
    try:
        v1 = start_service(fake, "open-streams-v1")
        try:
            targets = [
                Target(
                    "direct",
                    fake.proc.pid,
                    fake.port,
                    "/api/v1/chat/completions",
                    upstream_body,
                    "[DONE]",
                    [],
                ),
                Target("floor", floor.pid, floor_port, "/stream", "{}", "event: done", []),
                Target(
                    "relay", relay.pid, relay_port, "/relay", upstream_body, "[DONE]", [], (fake.proc.pid,)
                ),
                Target(
                    "chat",
                    svc.pid,
                    svc.port,
                    "/chat/message",
                    chat_body,
                    "event: done",
                    [f"X-Client-Token: {token}"],
                    (fake.proc.pid,),
                ),
                Target(
                    "v1",
                    v1.pid,
                    v1.port,
                    "/v1/chat/completions",
                    upstream_body,
                    "[DONE]",
                    [],
                    (fake.proc.pid,),
                ),
            ]
            out |= measure(targets, streams=streams, frames=chunks)
        finally:
            PROCS.stop(v1.proc)
    finally:
        PROCS.stop(floor)
        PROCS.stop(relay)
    stored = [check_stored(svc, token, f"os-{tag}-c", streams, chunks, prefix_of_message="c")]
    stored += [
        check_stored(svc, token, f"os-{tag}-r{n}", streams, chunks, prefix_of_message=f"r{n}")
        for n in range(WARM_ROUNDS)
    ]
    out["chat"]["stored"] = {key: sum(s[key] for s in stored) for key in stored[0]}
    floor_cpu, floor_kib = out["floor"]["cpu_us_per_chunk"], out["floor"]["kib_per_stream"]
    for key in ("chat", "v1"):
        out[key]["cpu_ratio"] = out[key]["cpu_us_per_chunk"] / floor_cpu
        out[key]["cpu_ratio_relay"] = out[key]["cpu_us_per_chunk"] / out["relay"]["cpu_us_per_chunk"]
        out[key]["memory_ratio"] = out[key]["kib_per_stream"] / floor_kib if floor_kib > 0 else float("inf")
    return out
