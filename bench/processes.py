"""Child processes: the fake upstream and the service on free ports, each in its own group, all ended."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from config.serve import uvicorn_command

from common import BENCH, HOST, RESULTS, ROOT, VENV_BIN, BenchError

SERVICE_ENV_CLEARED = (
    "OPENROUTER_API_KEY",
    "CONVERSATION_MAX",
    "PORT",
    "WORKERS",
    "REDIS_URL",
    "BACKEND_API_KEYS",
    "ALLOWED_MODELS",
    "RATE_LIMIT",
    "STORE_MAX_BYTES",
    "CLIENT_STORAGE_BYTES",
    "CLIENT_TOKEN_BUDGET",
    "TOTAL_TOKEN_BUDGET",
    "TRUSTED_PROXY_HOPS",
    "PROMETHEUS_MULTIPROC_DIR",
)


# Every process started here is in its own process group, dies with us, and is ended in finally.


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
        cwd: Path = ROOT,
    ) -> subprocess.Popen[bytes]:
        out: Any = subprocess.PIPE if stdout_pipe else (log.open("ab") if log else subprocess.DEVNULL)
        err: Any = log.open("ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
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


def on_signal(signum: int, _frame: object) -> None:
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

    def cpu_seconds(self) -> float:
        """User + system CPU time the uvicorn process has used so far (/proc/<pid>/stat)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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


def start_service(
    fake: Fake, name: str, *, checkout: Path | None = None, workers: int = 1, **settings: str
) -> Service:
    """The service of this checkout, or (for BENCH_BASELINE) plain uvicorn in another checkout."""
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
    # The command `make run` and the container use (config/serve.py), one worker on this port.
    if workers > 1:
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
    args = uvicorn_command({**env, "HOST": HOST, "PORT": str(port), "WORKERS": str(workers)})
    if checkout is not None:
        args = [str(VENV_BIN / "uvicorn"), "config.asgi:application", "--host", HOST, "--port", str(port)]
        args += ["--no-access-log"]
    proc = PROCS.spawn(args, env=env, log=log, cwd=checkout or ROOT)
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


@dataclass
class Redis:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


def start_redis(workdir: Path) -> Redis:
    """A redis-server on loopback with nothing saved to disk (installed with apt-get when missing)."""
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is missing: installing Debian's redis-server", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = PROCS.spawn(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        log=RESULTS / "redis.log",
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return Redis(proc, port)
        time.sleep(0.05)
    raise BenchError(f"redis-server did not start:\n{log_tail(RESULTS / 'redis.log')}")


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, both below Linux's ephemeral range."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((HOST, port))
                b.bind((HOST, port + 10000))
        except OSError:
            continue
        return port
    raise BenchError("no free port pair for a Redis Cluster node")


@dataclass
class RedisClusterNodes:
    procs: list[subprocess.Popen[bytes]]
    ports: list[int]

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.ports[0]}/0"

    def stop(self) -> None:
        for proc in self.procs:
            PROCS.stop(proc)


def start_redis_cluster(workdir: Path) -> RedisClusterNodes:
    """Three redis-server masters on loopback joined into one Redis Cluster (redis-cli --cluster create)."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise BenchError(
            "a Redis Cluster needs redis-server and redis-cli (Debian: redis-server redis-tools)"
        )
    ports = [_cluster_port() for _ in range(3)]
    procs = [
        PROCS.spawn(
            [
                *(binary, "--port", str(port), "--bind", HOST, "--cluster-enabled", "yes"),
                *("--cluster-config-file", f"nodes-{port}.conf", "--save", "", "--appendonly", "no"),
                *("--dir", str(workdir)),
            ],
            log=RESULTS / f"redis-cluster-{port}.log",
        )
        for port in ports
    ]
    nodes = RedisClusterNodes(procs, ports)
    try:
        for port in ports:
            _wait_for(cli, port, ["PING"], "PONG")
        subprocess.run(
            [cli, "--cluster", "create", *[f"{HOST}:{p}" for p in ports], "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in ports:
            _wait_for(cli, port, ["CLUSTER", "INFO"], "cluster_state:ok")
    except BaseException:
        nodes.stop()
        raise
    return nodes


def _wait_for(cli: str, port: int, command: list[str], expect: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = subprocess.run([cli, "-p", str(port), *command], capture_output=True, text=True, check=False)
        if expect in done.stdout:
            return
        time.sleep(0.05)
    raise BenchError(f"Redis Cluster node {port} did not answer {expect}")


def start_delay_proxy(target_port: int, delay_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    """bench/delay_proxy.py in front of a port: every chunk held `delay_ms` in each direction."""
    proc = PROCS.spawn(
        [
            sys.executable,
            str(BENCH / "delay_proxy.py"),
            "--target",
            f"{HOST}:{target_port}",
            "--delay-ms",
            str(delay_ms),
        ],
        stdout_pipe=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("ready"):
        raise BenchError("the delay proxy did not start")
    return proc, int(line.split()[1])


def redis_round_trip_ms(port: int, samples: int = 200, *, idle_ms: float = 0.0) -> float:
    """The median time of one PING, as the service's Redis client sees it, in ms; with `idle_ms`, each
    after that long asleep (both sides idle, as between a turn's two round trips at concurrency 1)."""
    times = []
    with socket.create_connection((HOST, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(samples):
            if idle_ms:
                time.sleep(idle_ms / 1000)
            started = time.perf_counter()
            sock.sendall(b"PING\r\n")
            sock.recv(16)
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2] * 1000
