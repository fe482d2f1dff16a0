from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from django.test import AsyncClient

from chat import upstream
from chat.store import reset_store
from tests.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-or-v1-testsecret0123456789abcdef"


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
    def __init__(self, env: dict[str, str]) -> None:
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
            ],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"server exited: {out}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> str:
        self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out.decode() if out else ""


@pytest.fixture(scope="session")
def live_server_url(fake_upstream: FakeUpstream) -> Iterator[str]:
    """The service under uvicorn, on loopback, in front of the fake upstream."""
    server = LiveServer({"LLM_BASE_URL": fake_upstream.url, "LLM_API_KEY": SECRET, "LOG_LEVEL": "INFO"})
    yield server.url
    server.stop()


@pytest.fixture
def http(live_server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server_url, timeout=30) as c:
        yield c
