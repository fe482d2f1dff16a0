from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
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
from stores import reset_store
from tests.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.browser"]
SECRET = "sk-or-v1-testsecret0123456789abcdef"


@pytest.fixture(scope="session", autouse=True)
def _static_files_collected() -> None:
    """The content-hashed static files /docs and the chat page link to (what `make run` and the
    container collect), collected once per clean checkout."""
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
    def __init__(self, env: dict[str, str], *, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **env, "PORT": str(self.port)}
        full_env.pop("DJANGO_SETTINGS_MODULE", None)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--workers",
                str(workers),
            ],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # Drained all along: a server whose log fills the pipe (64 KiB) would stop answering.
        self._output: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self._wait()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._output.append(line)

    def output(self) -> str:
        return b"".join(self._output).decode(errors="replace")

    def _wait(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> str:
        """Stop the server; everything it wrote."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        return self.output()


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

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = require_program("redis-server", "redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
