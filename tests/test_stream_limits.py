"""Streams are bounded: LLM_STREAM_MAX_SECONDS in all, and LLM_TIMEOUT without a data event (an
upstream's comment lines are keep-alives, not progress). Either way: one error frame, the upstream
request closed, nothing stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import SECRET, LiveServer
from tests.fake_upstream import FakeUpstream, Reply

STREAM_MAX = 2.0


def start(fake_upstream: FakeUpstream, **env: str) -> LiveServer:
    return LiveServer(
        {"LLM_BASE_URL": fake_upstream.url, "LLM_API_KEY": SECRET, "LLM_MAX_RETRIES": "0", **env}
    )


@pytest.fixture(scope="module")
def capped(fake_upstream: FakeUpstream) -> Iterator[LiveServer]:
    server = start(fake_upstream, LLM_TIMEOUT="30", LLM_STREAM_MAX_SECONDS=str(STREAM_MAX))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def impatient(fake_upstream: FakeUpstream) -> Iterator[LiveServer]:
    server = start(fake_upstream, LLM_TIMEOUT="1")
    yield server
    server.stop()


def stream(url: str, path: str, body: dict[str, Any]) -> tuple[list[tuple[str, Any]], float]:
    """Every SSE event of one streamed answer as (event, data), and the seconds it took."""
    events: list[tuple[str, Any]] = []
    started = time.monotonic()
    with httpx.stream("POST", f"{url}{path}", json=body, timeout=30) as response:
        assert response.status_code == 200
        event = "message"
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
                events.append((event, data if data == "[DONE]" else orjson.loads(data)))
                event = "message"
    return events, time.monotonic() - started


def upstream_closed(fake_upstream: FakeUpstream) -> bool:
    deadline = time.monotonic() + 2
    while fake_upstream.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    return fake_upstream.disconnects == 1


def test_it_ends_a_comment_only_stream_at_the_stream_limit(
    capped: LiveServer, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(endless=True, comments_only=True, chunk_delay=0.2))
    events, took = stream(
        capped.url, "/chat/message", {"message": "q", "conversation_id": "cap-1", "stream": True}
    )
    assert STREAM_MAX <= took < STREAM_MAX + 1
    assert [e for e, _ in events] == ["error"]
    error = events[-1][1]
    assert error["code"] == "upstream_timeout" and error["status"] == "error"
    assert f"{STREAM_MAX:g} seconds" in error["message"]
    assert upstream_closed(fake_upstream)
    assert httpx.get(f"{capped.url}/chat/conversations/cap-1").status_code == 404


def test_it_ends_a_stream_that_never_finishes_at_the_stream_limit(
    capped: LiveServer, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(endless=True, chunk_delay=0.2))
    events, took = stream(
        capped.url, "/chat/message", {"message": "q", "conversation_id": "cap-2", "stream": True}
    )
    assert STREAM_MAX <= took < STREAM_MAX + 1
    kinds = [e for e, _ in events]
    assert kinds.count("delta") >= 5 and kinds[-1] == "error" and "done" not in kinds
    assert events[-1][1]["code"] == "upstream_timeout"
    assert upstream_closed(fake_upstream)
    assert httpx.get(f"{capped.url}/chat/conversations/cap-2").status_code == 404


def test_it_ends_an_openai_stream_at_the_stream_limit(
    capped: LiveServer, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(endless=True, comments_only=True, chunk_delay=0.2))
    body = {"messages": [{"role": "user", "content": "q"}], "stream": True}
    events, took = stream(capped.url, "/v1/chat/completions", body)
    assert STREAM_MAX <= took < STREAM_MAX + 1
    assert events[-1][1]["error"]["code"] == "upstream_timeout"


def test_it_does_not_count_comments_as_progress(impatient: LiveServer, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(endless=True, comments_only=True, chunk_delay=0.2))
    events, took = stream(impatient.url, "/chat/message", {"message": "q", "stream": True})
    assert 1.0 <= took < 2.0  # LLM_TIMEOUT=1, though a comment came every 0.2 s
    assert events == [("error", events[-1][1])]
    assert events[-1][1]["code"] == "upstream_timeout"
    assert "sent nothing for 1 seconds" in events[-1][1]["message"]
    assert upstream_closed(fake_upstream)


def test_it_lets_a_slow_but_steady_stream_run_past_llm_timeout(
    impatient: LiveServer, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(chunks=[f"w{n} " for n in range(6)], chunk_delay=0.5))
    events, took = stream(impatient.url, "/chat/message", {"message": "q", "stream": True})
    assert took > 2.0
    assert events[-1][0] == "done" and events[-1][1]["response"] == "w0 w1 w2 w3 w4 w5 "
