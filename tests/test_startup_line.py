"""Start-up says in one line what the process is connected to: the upstream, whether a key is set,
and the store and whether it answered."""

from __future__ import annotations

import httpx

from tests.conftest import SECRET, LiveServer, free_port
from tests.fake_upstream import FakeUpstream


def starting_line(output: str) -> str:
    lines = [line for line in output.splitlines() if "starting: upstream" in line]
    assert len(lines) == 1, output
    return lines[0]


def test_it_names_the_upstream_key_and_store(fake_upstream: FakeUpstream) -> None:
    server = LiveServer({"LLM_BASE_URL": fake_upstream.url, "LLM_API_KEY": SECRET})
    output = server.stop()
    line = starting_line(output)
    assert " INFO " in line
    assert fake_upstream.url in line and "key set" in line and "local-memory (answering)" in line
    assert SECRET not in output


def test_it_warns_when_the_store_does_not_answer_and_no_key_is_set() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = LiveServer(
        {"LLM_BASE_URL": "https://openrouter.ai/api/v1", "LLM_API_KEY": "", "REDIS_URL": dead}
    )
    ready = httpx.get(f"{server.url}/ready")
    output = server.stop()
    line = starting_line(output)
    assert " WARNING " in line
    assert "key missing" in line and "redis (NOT answering)" in line
    assert ready.status_code == 503 and ready.json()["ready"] is False
