"""`make bench`: the service's added latency, throughput, streaming and memory, all on loopback.

Starts a fast fake upstream (bench/fake_upstream.py), the service (one uvicorn worker, the local
store, started with config.serve's uvicorn command, as `make run` starts it) and drives it with wrk
(bench/post.lua; installed with apt-get when missing) plus a small httpx client for streams. Prints
a table with the targets and writes bench/results/latest.json (with the services' logs, and
py-spy's raw profile when asked for, beside it).

The hostile-edge phase sends one request with a 10 MB header while timing /health on another
connection (the header-limit choice: refused within a second, nobody else waiting), then times 50
sequential /openapi.json requests (served from memory).

Added latency is timed per request by the Lua script (concurrency 1): wrk's own percentiles are
corrected for coordinated omission, which invents samples in a closed-loop run's tail (they are kept
in the JSON and shown beside). Throughput is wrk's requests / duration. The memory fill (10,000
conversations, CONVERSATION_MAX=20000) and the soak (default CONVERSATION_MAX) run at the same time on
two separate single-worker services, one a core; each figure is that process's own VmRSS.

Settings (environment): BENCH_SECONDS (10, each measured wrk run), BENCH_WARMUP (2, seconds of wrk
before each), BENCH_CONCURRENCY (16), BENCH_STREAM_SAMPLES (200 TTFB pairs), BENCH_STREAM_RUNS (5
streams with delay), BENCH_CHUNK_DELAY_MS (50), BENCH_FILL_CONVERSATIONS (10000), BENCH_SOAK_TURNS
(100000), BENCH_SOAK_SAMPLE_EVERY (20000), BENCH_SOAK_PATH (/memory-chat/message), BENCH_PROFILE (0;
1 = also profile POST /chat/message under load with py-spy), BENCH_PROFILE_SECONDS (10).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.serve import uvicorn_command  # noqa: E402  (the command make run and the container use)

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

TARGET_P50_MS = 1.5
TARGET_P99_MS = 4.0
TARGET_RPS = 600.0
TARGET_TTFB_MS = 2.0
TARGET_CONVERSATION_BYTES = 8 * 1024
TARGET_FLOOD_ANSWER_S = 1.0
TARGET_FLOOD_OTHERS_MS = 100.0
TARGET_SCHEMA_MS = 5.0
FLOOD_BYTES = 10 * 2**20


SERVICE_ENV_CLEARED = (
    "OPENROUTER_API_KEY",
    "CONVERSATION_MAX",
    "PORT",
    "WORKERS",
    "REDIS_URL",
    "BACKEND_API_KEYS",
    "ALLOWED_MODELS",
    "RATE_LIMIT",
    "PROMETHEUS_MULTIPROC_DIR",
)


class BenchError(RuntimeError):
    pass


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


@dataclass(frozen=True)
class Config:
    seconds: int = field(default_factory=lambda: _env_int("BENCH_SECONDS", 10))
    warmup: int = field(default_factory=lambda: _env_int("BENCH_WARMUP", 2))
    concurrency: int = field(default_factory=lambda: _env_int("BENCH_CONCURRENCY", 16))
    stream_samples: int = field(default_factory=lambda: _env_int("BENCH_STREAM_SAMPLES", 200))
    stream_runs: int = field(default_factory=lambda: _env_int("BENCH_STREAM_RUNS", 5))
    chunk_delay_ms: int = field(default_factory=lambda: _env_int("BENCH_CHUNK_DELAY_MS", 50))
    fill_conversations: int = field(default_factory=lambda: _env_int("BENCH_FILL_CONVERSATIONS", 10000))
    soak_turns: int = field(default_factory=lambda: _env_int("BENCH_SOAK_TURNS", 100000))
    soak_sample_every: int = field(default_factory=lambda: _env_int("BENCH_SOAK_SAMPLE_EVERY", 20000))
    soak_path: str = field(default_factory=lambda: os.environ.get("BENCH_SOAK_PATH", "/memory-chat/message"))
    profile: bool = field(default_factory=lambda: _env_int("BENCH_PROFILE", 0) > 0)
    profile_seconds: int = field(default_factory=lambda: _env_int("BENCH_PROFILE_SECONDS", 10))


# ---------------------------------------------------------------------------------------------------
# processes: every one started here is in its own process group, dies with us, and is ended in finally


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Processes:
    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        out: Any = subprocess.PIPE if stdout_pipe else (log.open("ab") if log else subprocess.DEVNULL)
        err: Any = log.open("ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                # preexec_fn is unsafe in a threaded parent; wrk, the one spawned from threads, ends
                # by itself after its -d anyway.
                preexec_fn=_die_with_parent
                if threading.current_thread() is threading.main_thread()
                else None,
            )
        finally:
            for handle in (out, err):
                if hasattr(handle, "close"):
                    handle.close()
        self.started.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # its own group: only what we started
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(grace)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop_all(self) -> None:
        while self.started:
            self.stop(self.started.pop())


PROCS = Processes()


def _on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass
class Fake:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}/api/v1"


def start_fake(log: Path) -> Fake:
    port = free_port()
    proc = PROCS.spawn(
        [sys.executable, str(BENCH / "fake_upstream.py"), "--host", HOST, "--port", str(port)],
        env=dict(os.environ),
        log=log,
        stdout_pipe=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()  # "ready <port>", or EOF when it failed
    if not line.startswith("ready"):
        raise BenchError(f"the fake upstream did not start:\n{log_tail(log)}")
    return Fake(proc, port)


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    pid: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def rss(self) -> int:
        """VmRSS of the uvicorn process, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise BenchError("no VmRSS")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def start_service(fake: Fake, name: str, **settings: str) -> Service:
    port = free_port()
    env = dict(os.environ)
    # Settings that would change what is measured: the local store, no access keys, any model.
    for key in SERVICE_ENV_CLEARED:
        env.pop(key, None)
    env.update(
        LLM_BASE_URL=fake.base,
        LLM_API_KEY="sk-bench",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        # The per-client limit stays on (its cost is part of the hot path) but never trips.
        RATE_LIMIT="1000000000/minute",
    )
    env.update(settings)
    log = RESULTS / f"service-{name}.log"
    log.write_text("")
    args = uvicorn_command({**env, "HOST": HOST, "PORT": str(port), "WORKERS": "1"})
    proc = PROCS.spawn(args, env=env, log=log)
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                raise BenchError(f"the service exited ({proc.returncode}):\n{log_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"http://{HOST}:{port}/health").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"the service did not answer /health in 60 s:\n{log_tail(log)}")
            time.sleep(0.1)
    # With --workers 1 uvicorn serves in its own process; were it ever to fork, measure the worker.
    workers = [c for c in _children(proc.pid) if Path(f"/proc/{c}/status").exists()]
    pid = workers[0] if len(workers) == 1 else proc.pid
    return Service(proc, port, pid, log)


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

    def _command(
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
        out = self._exec(self._command(url, connections, seconds, body, args), timeout=seconds + 30)
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
        command = self._command(url, connections, limit_s, body, {**args, "quota": str(quota)})
        out = self._exec(command, timeout=limit_s + 30)
        match = re.search(r"QUOTA answered=(\d+) failed=(\d+)", out)
        if match is None:
            raise BenchError(f"wrk did not finish its {quota} requests within {limit_s} s:\n{out[-2000:]}")
        return int(match.group(1)), int(match.group(2)), time.perf_counter() - started


# ---------------------------------------------------------------------------------------------------
# phases


def upstream_payload(
    messages: list[dict[str, str]], *, stream: bool = False, model: str = MODEL
) -> dict[str, Any]:
    """What the service sends upstream for a turn (so the direct baseline moves the same bytes)."""
    return {"model": model, "messages": messages, "max_tokens": 1000, "temperature": 0.7, "stream": stream}


def ten_messages() -> list[dict[str, str]]:
    messages = []
    for n in range(5):
        messages.append({"role": "user", "content": f"Question number {n}: what is {n} + {n}?"})
        messages.append({"role": "assistant", "content": f"{n} + {n} = {2 * n}."})
    messages[-1] = {"role": "user", "content": "hi"}
    return messages


def phase_latency(wrk: Wrk, svc: Service, fake: Fake, cfg: Config, token: str) -> dict[str, Any]:
    print("1. added latency at concurrency 1 ...", flush=True)
    direct_body = wrk.body(
        "direct",
        upstream_payload([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "hi"}]),
    )
    chat_body = wrk.body("chat-new", {"message": "hi", "conversation_id": "{id}"})
    direct = wrk.measure(f"{fake.base}/chat/completions", direct_body, connections=1, cfg=cfg)
    service = wrk.measure(
        f"{svc.url}/chat/message", chat_body, connections=1, cfg=cfg, turns="1", prefix=f"lat{token}"
    )
    return {
        "direct": asdict(direct) | {"rps": direct.rps},
        "service": asdict(service) | {"rps": service.rps},
        "added_p50_ms": (service.raw_p50_ms or 0.0) - (direct.raw_p50_ms or 0.0),
        "added_p99_ms": (service.raw_p99_ms or 0.0) - (direct.raw_p99_ms or 0.0),
        "wrk_corrected_added_p50_ms": service.p50_ms - direct.p50_ms,
        "wrk_corrected_added_p99_ms": service.p99_ms - direct.p99_ms,
    }


def phase_throughput(wrk: Wrk, svc: Service, cfg: Config, token: str) -> dict[str, Any]:
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
    return {name: asdict(run) | {"rps": run.rps} for name, run in runs.items()}


def _frames(
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


def _service_delta(frame: bytes) -> bool:
    return frame.startswith(b"event: delta")


def _upstream_delta(frame: bytes) -> bool:
    return frame.startswith(b"data: {") and b'"content":"tok' in frame


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


def phase_streaming(svc: Service, fake: Fake, cfg: Config) -> dict[str, Any]:
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
            d = _frames(
                client, direct_url, upstream_payload(user, stream=True, model=fast_model), _upstream_delta
            )
            s = _frames(
                client, chat_url, {"message": "hi", "stream": True, "model": fast_model}, _service_delta
            )
            if n >= 20:
                ttfb_direct.append(d[0] * 1000)
                ttfb_service.append(s[0] * 1000)
        gaps_service: list[float] = []
        gaps_direct: list[float] = []
        for _ in range(cfg.stream_runs):
            gaps_service += _gaps(
                _frames(
                    client, chat_url, {"message": "hi", "stream": True, "model": slow_model}, _service_delta
                )
            )
        for _ in range(max(1, cfg.stream_runs // 2)):
            gaps_direct += _gaps(
                _frames(
                    client, direct_url, upstream_payload(user, stream=True, model=slow_model), _upstream_delta
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


def _flood(port: int, size: int) -> tuple[bytes, float]:
    """One request whose single header is `size` bytes; (the answer's first bytes, seconds to it)."""
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=30) as sock:
        with contextlib.suppress(OSError):  # refused before it was all sent: the answer is still there
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Flood: ")
            piece = b"a" * 65536
            for _ in range(size // len(piece)):
                sock.sendall(piece)
            sock.sendall(b"\r\n\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            answer = sock.recv(64)
    return answer, time.perf_counter() - started


def phase_hostile(svc: Service) -> dict[str, Any]:
    """The header-limit choice under a header flood, and the schema served from memory."""
    print("6. hostile edge: a 10 MB header while /health is timed; 50 x /openapi.json ...", flush=True)
    probes: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=svc.url, timeout=30.0) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get("/health")
                probes.append((time.perf_counter() - started) * 1000)
                time.sleep(0.005)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    time.sleep(0.3)
    answer, took = _flood(svc.port, FLOOD_BYTES)
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=30)
    schema: list[float] = []
    with httpx.Client(base_url=svc.url, timeout=30.0) as client:
        client.get("/openapi.json").raise_for_status()
        for _ in range(50):
            started = time.perf_counter()
            client.get("/openapi.json").raise_for_status()
            schema.append((time.perf_counter() - started) * 1000)
    return {
        "flood_bytes": FLOOD_BYTES,
        "flood_answer": answer.split(b"\r\n", 1)[0].decode(errors="replace"),
        "flood_seconds": took,
        "health_during_flood_ms": _spread(probes),
        "schema_ms": _spread(schema),
    }


def _get_json(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=10.0)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _settle(svc: Service) -> int:
    """RSS once the process has gone quiet for a moment."""
    time.sleep(0.5)
    return svc.rss()


def _warm_memory(wrk: Wrk, svc: Service, token: str, c: int) -> None:
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


def phase_memory(wrk: Wrk, svc: Service, cfg: Config, token: str) -> dict[str, Any]:
    convs = cfg.fill_conversations
    print(f"5a. memory: {convs} conversations of 10 messages ...", flush=True)
    c = cfg.concurrency
    _warm_memory(wrk, svc, token, c)
    before = _settle(svc)
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
    after = _settle(svc)
    stored = int(_get_json(f"{svc.url}/memory-chat/health")["active_conversations"])
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
    }


def phase_soak(wrk: Wrk, svc: Service, cfg: Config, token: str) -> dict[str, Any]:
    print(f"5b. soak: {cfg.soak_turns} turns on {cfg.soak_path}, CONVERSATION_MAX 1000 ...", flush=True)
    c = cfg.concurrency
    _warm_memory(wrk, svc, token, c)
    body = wrk.body("soak", {"message": FILL_MESSAGE, "conversation_id": "{id}"})
    samples = [{"turns": 0, "rss": _settle(svc), "conversations": 0}]
    kind = "memory-chat" if cfg.soak_path.startswith("/memory-chat") else "chat"
    failed_total = 0
    done = 0
    started = time.perf_counter()
    while done < cfg.soak_turns:
        turns = min(cfg.soak_sample_every, cfg.soak_turns - done)
        _answered, failed, _ = wrk.quota(
            f"{svc.url}{cfg.soak_path}",
            body,
            connections=c,
            quota=turns,
            limit_s=600,
            turns="5",
            prefix=f"soak{token}",
            offset=str(done // 5),
            mark="message_count",
            tail="/health",
        )
        failed_total += failed
        done += turns
        health = _get_json(f"{svc.url}/{kind}/health")
        samples.append(
            {"turns": done, "rss": _settle(svc), "conversations": int(health["active_conversations"])}
        )
        print(
            f"   {done:>7} turns  RSS {samples[-1]['rss'] / 2**20:7.1f} MiB  "
            f"conversations {samples[-1]['conversations']}",
            flush=True,
        )
    usage = _get_json(f"{svc.url}/chat/health").get("usage", {})
    return {
        "path": cfg.soak_path,
        "samples": samples,
        "failed": failed_total,
        "seconds": time.perf_counter() - started,
        "evictions": usage.get("evictions"),
    }


# ---------------------------------------------------------------------------------------------------
# profile (BENCH_PROFILE=1)


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


def phase_profile(wrk: Wrk, svc: Service, cfg: Config, token: str) -> dict[str, Any]:
    print(f"profile: py-spy for {cfg.profile_seconds} s while wrk drives POST /chat/message ...", flush=True)
    py_spy = ensure_py_spy()
    raw = RESULTS / "profile.txt"
    raw.unlink(missing_ok=True)
    body = wrk.body("chat-new", {"message": "hi", "conversation_id": "{id}"})
    command = wrk._command(
        f"{svc.url}/chat/message",
        cfg.concurrency,
        cfg.profile_seconds + 4,
        body,
        {"turns": "1", "prefix": f"prof{token}"},
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


# ---------------------------------------------------------------------------------------------------
# report


@dataclass
class Row:
    measure: str
    figure: str
    target: str = ""
    ok: bool | None = None  # None: information, no target

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def _errors_note(run: dict[str, Any]) -> str:
    count = sum(run["errors"].values())
    return f"  ({count} errors: {run['errors']})" if count else ""


def build_rows(r: dict[str, Any], cfg: Config) -> list[Row]:
    rows: list[Row] = []
    lat = r["latency"]
    for q, target in (("50", TARGET_P50_MS), ("99", TARGET_P99_MS)):
        added = lat[f"added_p{q}_ms"]
        rows.append(
            Row(
                f"1. added latency p{q}, c=1, POST /chat/message (new conversation)",
                f"{added:.2f} ms  (service {lat['service'][f'raw_p{q}_ms']:.2f}"
                f" - direct {lat['direct'][f'raw_p{q}_ms']:.2f}; wrk's corrected figures"
                f" {lat['service'][f'p{q}_ms']:.2f} - {lat['direct'][f'p{q}_ms']:.2f})"
                + _errors_note(lat["service"]),
                f"<= {target:g} ms",
                added <= target and not lat["service"]["errors"],
            )
        )
    tp = r["throughput"]
    c = cfg.concurrency
    for key, label, target in (
        ("chat_new", f"2. POST /chat/message, c={c}, new conversations", TARGET_RPS),
        ("chat_long", f"2. POST /chat/message, c={c}, one long conversation", None),
        ("v1_one_message", f"3. POST /v1/chat/completions, c={c}, 1 message", TARGET_RPS),
        ("v1_ten_messages", f"3. POST /v1/chat/completions, c={c}, 10 messages", None),
    ):
        run = tp[key]
        figure = (
            f"{run['rps']:.0f} req/s  (p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms)"
            + _errors_note(run)
        )
        if target is None:
            rows.append(Row(label, figure))
        else:
            rows.append(
                Row(label, figure, f">= {target:g} req/s", run["rps"] >= target and not run["errors"])
            )
    st = r["streaming"]
    rows.append(
        Row(
            "4. streaming: added time to first frame (median)",
            f"{st['ttfb_added_ms']:.2f} ms  (service {st['ttfb_service_ms']['median']:.2f} - direct "
            f"{st['ttfb_direct_ms']['median']:.2f})",
            f"<= {TARGET_TTFB_MS:g} ms",
            st["ttfb_added_ms"] <= TARGET_TTFB_MS,
        )
    )
    gap = st["gap_service_ms"]
    delay = st["chunk_delay_ms"]
    spaced = abs(gap["median"] - delay) <= max(5.0, delay * 0.2) and gap["p10"] >= delay / 2
    rows.append(
        Row(
            f"4. streaming: gap between frames, upstream every {delay} ms",
            f"median {gap['median']:.1f} ms  (p10 {gap['p10']:.1f}, p90 {gap['p90']:.1f}, "
            f"{gap['count']} gaps; "
            f"direct median {st['gap_direct_ms']['median']:.1f})",
            f"~{delay} ms, none bunched",
            spaced,
        )
    )
    if "hostile" in r:
        rows += _hostile_rows(r["hostile"])
    mem = r["memory"]
    per = mem["bytes_per_conversation"]
    rows.append(
        Row(
            f"5. memory per stored 10-message conversation ({mem['stored']} stored)",
            f"{per / 1024:.2f} KiB  (RSS {mem['rss_before'] / 2**20:.1f}"
            f" -> {mem['rss_after'] / 2**20:.1f} MiB)",
            f"<= {TARGET_CONVERSATION_BYTES // 1024} KiB",
            per <= TARGET_CONVERSATION_BYTES and mem["stored"] == mem["conversations"] and not mem["failed"],
        )
    )
    soak = r["soak"]
    for sample in soak["samples"]:
        rows.append(
            Row(
                f"5. soak RSS after {sample['turns']:>6} turns",
                f"{sample['rss'] / 2**20:.1f} MiB  ({sample['conversations']} conversations kept)",
            )
        )
    samples = soak["samples"]
    if len(samples) >= 3:
        last = samples[-1]["rss"] - samples[len(samples) // 2]["rss"]
        rows.append(
            Row(
                "5. soak RSS growth over its second half",
                f"{last / 2**20:+.1f} MiB  (evictions {soak['evictions']}, failed {soak['failed']})",
            )
        )
    if "profile" in r:
        rows.append(
            Row("profile: throughput while sampled", f"{r['profile'].get('rps_while_profiled', 0):.0f} req/s")
        )
    return rows


def _hostile_rows(h: dict[str, Any]) -> list[Row]:
    health = h["health_during_flood_ms"]
    schema = h["schema_ms"]
    return [
        Row(
            f"6. a {h['flood_bytes'] // 2**20} MB request header: answered",
            f"{h['flood_seconds'] * 1000:.1f} ms  ({h['flood_answer'] or 'connection closed'})",
            f"< {TARGET_FLOOD_ANSWER_S:g} s",
            h["flood_seconds"] < TARGET_FLOOD_ANSWER_S and " 200 " not in h["flood_answer"],
        ),
        Row(
            "6. GET /health meanwhile: slowest",
            f"{health['max']:.1f} ms  (median {health['median']:.1f}, {health['count']} requests)",
            f"< {TARGET_FLOOD_OTHERS_MS:g} ms",
            health["max"] < TARGET_FLOOD_OTHERS_MS,
        ),
        Row(
            "6. GET /openapi.json, 50 in a row after the first",
            f"median {schema['median']:.2f} ms  (p90 {schema['p90']:.2f}, max {schema['max']:.2f})",
            f"< {TARGET_SCHEMA_MS:g} ms (median)",
            schema["median"] < TARGET_SCHEMA_MS,
        ),
    ]


def render(rows: list[Row]) -> str:
    widths = [
        max(len(h), max((len(getattr(r, a)) for r in rows), default=0))
        for h, a in (
            ("measure", "measure"),
            ("figure", "figure"),
            ("target", "target"),
            ("result", "verdict"),
        )
    ]
    line = "  ".join("-" * w for w in widths)
    out = [
        "  ".join(h.ljust(w) for h, w in zip(("measure", "figure", "target", "result"), widths, strict=True)),
        line,
    ]
    for r in rows:
        cells = (r.measure, r.figure, r.target, r.verdict)
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


def render_profile(profile: dict[str, Any]) -> str:
    out = [
        f"profile of POST /chat/message under load: {profile['samples']} samples"
        " (py-spy --gil: the thread holding the GIL)",
        "top self time:",
    ]
    out += [f"  {p['percent']:5.1f}%  {p['function']}" for p in profile["self"]]
    out.append("self time by package or module:")
    out += [f"  {p['percent']:5.1f}%  {p['function']}" for p in profile["self_by_package"]]
    out.append("top inclusive time (below the event loop):")
    out += [f"  {p['percent']:5.1f}%  {p['function']}" for p in profile["inclusive"]]
    return "\n".join(out)


def _git_state() -> dict[str, Any]:
    """Which code was measured: the commit, and the files changed on top of it."""
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        state = {"commit": head.stdout.strip(), "changed": [x[3:] for x in status.stdout.splitlines()]}
    return state


def _version(args: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    return "unknown"


@contextlib.contextmanager
def fake_and_service(name: str, **settings: str) -> Iterator[tuple[Fake, Service]]:
    fake = start_fake(RESULTS / f"fake-{name}.log")
    try:
        svc = start_service(fake, name, **settings)
        try:
            yield fake, svc
        finally:
            PROCS.stop(svc.proc)
    finally:
        PROCS.stop(fake.proc)


def main() -> int:
    signal.signal(signal.SIGTERM, _on_signal)
    cfg = Config()
    started = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    wrk_binary = ensure_wrk()
    token = uuid.uuid4().hex[:8]
    load_at_start = list(os.getloadavg())
    git_state = _git_state()
    if load_at_start[0] > 1.0:
        print(
            f"note: load average {load_at_start[0]:.1f} before the start; figures will be noisy", flush=True
        )
    results: dict[str, Any] = {}
    print(
        f"bench: {cfg.seconds} s per wrk run after {cfg.warmup} s warm-up; "
        f"logs in {RESULTS.relative_to(ROOT)}/",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
            wrk = Wrk(wrk_binary, Path(workdir))
            with fake_and_service("main") as (fake, svc):
                results["latency"] = phase_latency(wrk, svc, fake, cfg, token)
                results["throughput"] = phase_throughput(wrk, svc, cfg, token)
                results["streaming"] = phase_streaming(svc, fake, cfg)
                results["hostile"] = phase_hostile(svc)
                if cfg.profile:
                    results["profile"] = phase_profile(wrk, svc, cfg, token)
            conversation_max = str(max(20000, 2 * cfg.fill_conversations))
            # Two single-worker services on two cores: the fill and the soak run side by side (each
            # figure is one process's own RSS, so neither disturbs the other's).
            with (
                fake_and_service("memory", CONVERSATION_MAX=conversation_max) as (_, memory_svc),
                fake_and_service("soak") as (_, soak_svc),
            ):
                pool = ThreadPoolExecutor(2)
                try:
                    memory = pool.submit(phase_memory, wrk, memory_svc, cfg, token)
                    soak = pool.submit(phase_soak, wrk, soak_svc, cfg, token)
                    results["memory"] = memory.result() | {"conversation_max": int(conversation_max)}
                    results["soak"] = soak.result()
                except BaseException:
                    PROCS.stop_all()  # ends the other phase's wrk at once, so its thread ends too
                    raise
                finally:
                    pool.shutdown(wait=True)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench interrupted", file=sys.stderr)
        return 130
    finally:
        PROCS.stop_all()
    elapsed = time.perf_counter() - started
    rows = build_rows(results, cfg)
    table = render(rows)
    print()
    print(table)
    if "profile" in results:
        print()
        print(render_profile(results["profile"]))
    misses = [r.measure for r in rows if r.ok is False]
    print(f"\n{sum(r.ok is True for r in rows)} PASS, {len(misses)} MISS; total run time {elapsed:.0f} s")
    report = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_seconds": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": _version([wrk_binary, "-v"]),
        },
        "code": git_state,
        "config": asdict(cfg),
        "targets": {
            "added_p50_ms": TARGET_P50_MS,
            "added_p99_ms": TARGET_P99_MS,
            "rps_new_conversations": TARGET_RPS,
            "ttfb_added_ms": TARGET_TTFB_MS,
            "bytes_per_conversation": TARGET_CONVERSATION_BYTES,
            "flood_answer_s": TARGET_FLOOD_ANSWER_S,
            "flood_others_ms": TARGET_FLOOD_OTHERS_MS,
            "schema_ms": TARGET_SCHEMA_MS,
        },
        "checks": [asdict(r) | {"result": r.verdict} for r in rows],
        "results": results,
        "table": table,
    }
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {(RESULTS / 'latest.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
