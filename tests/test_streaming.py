"""POST /chat/message with stream: true, read frame by frame from the live server: deltas arrive before
the upstream finishes, the stored reply is exactly what the done frame says, a failure mid-stream (or a
cut stream, or the store failing at the end) ends with an error frame and stores nothing, a failure
before the stream keeps its status, keep-alive comments fill quiet gaps, and a client that goes away
closes the upstream call and is counted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from django.http import StreamingHttpResponse

from tests.conftest import SECRET, LiveServer
from tests.fake_upstream import FakeUpstream, Reply, error_body


def frames(response: httpx.Response) -> Iterator[tuple[str, Any, float]]:
    """(event, data, arrival time) for each SSE event; comments are skipped."""
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event or "message", orjson.loads(line[6:]), time.monotonic()
            event = None


def stream_chat(http: httpx.Client, body: dict[str, Any]) -> Any:
    return http.stream("POST", "/chat/message", json={**body, "stream": True})


def test_it_streams_deltas_before_the_upstream_finishes(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(chunks=["Hel", "lo ", "there"], chunk_delay=0.6))
    started = time.monotonic()
    with stream_chat(http, {"message": "hi", "conversation_id": "s-1"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        received = list(frames(response))
    deltas = [(data["delta"], at) for event, data, at in received if event == "delta"]
    assert [d for d, _ in deltas] == ["Hel", "lo ", "there"]
    # the first delta arrives well before the two 0.6 s pauses are over
    assert deltas[0][1] - started < 0.6
    assert deltas[2][1] - deltas[0][1] > 1.0
    event, done, _ = received[-1]
    assert event == "done"
    assert done["response"] == "Hello there"
    assert done["conversation_id"] == "s-1" and done["status"] == "success"
    assert done["usage"]["total_tokens"] == 15 and done["message_count"] == 2


def test_it_stores_exactly_what_the_done_frame_says(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(chunks=["a", "b"], model="fake/streamer"))
    with stream_chat(http, {"message": "q", "conversation_id": "s-2"}) as response:
        received = list(frames(response))
    event, done, _ = received[-1]
    assert event == "done"
    stored = http.get("/chat/conversations/s-2").json()["conversation"]
    assert stored["messages"][-1]["content"] == done["response"] == "ab"
    assert stored["messages"][-1]["model"] == done["model"] == "fake/streamer"
    assert stored["total_tokens"] == done["total_tokens"]
    sent = fake_upstream.completions()[0].body
    assert sent["stream"] is True


def test_it_sends_an_error_frame_and_stores_nothing_on_a_mid_stream_error(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(chunks=["par", "tial", "x"], stream_error_after=2))
    with stream_chat(http, {"message": "q", "conversation_id": "s-3"}) as response:
        received = list(frames(response))
    assert [e for e, _, _ in received] == ["delta", "delta", "error"]
    error = received[-1][1]
    assert error["status"] == "error" and error["code"] == "upstream_error"
    assert "provider failed" not in error["message"]
    assert http.get("/chat/conversations/s-3").status_code == 404


def test_it_treats_a_cut_stream_as_an_error(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(chunks=["one", "two", "three"], stream_cut_after=2))
    with stream_chat(http, {"message": "q", "conversation_id": "s-4"}) as response:
        received = list(frames(response))
    assert received[-1][0] == "error"
    assert received[-1][1]["code"] == "upstream_stream_cut"
    assert "done" not in [e for e, _, _ in received]
    assert http.get("/chat/conversations/s-4").status_code == 404


def test_it_answers_failures_before_the_stream_with_their_status(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    bad = http.post("/chat/message", json={"message": "", "stream": True})
    assert bad.status_code == 422
    fake_upstream.queue(Reply(status=429, body=error_body(429, "slow"), headers={"Retry-After": "3"}))
    limited = http.post("/chat/message", json={"message": "q", "stream": True})
    assert limited.status_code == 429
    assert limited.json()["code"] == "upstream_rate_limited"
    assert limited.headers["retry-after"] == "3"


def test_it_closes_the_upstream_when_the_client_goes_away(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    chunks = [f"w{n} " for n in range(60)]
    fake_upstream.queue(Reply(chunks=chunks, chunk_delay=0.1))
    with stream_chat(http, {"message": "q", "conversation_id": "s-5"}) as response:
        for event, _, _ in frames(response):
            if event == "delta":
                break
    closed_at = time.monotonic()
    while fake_upstream.disconnects == 0 and time.monotonic() - closed_at < 3:
        time.sleep(0.02)
    assert fake_upstream.disconnects == 1
    assert time.monotonic() - closed_at < 1.0
    assert http.get("/chat/conversations/s-5").status_code == 404
    logs = http.get("/api/hf/logs?limit=50").json()["logs"]
    lines = [r["message"] for r in logs if "client disconnected mid-stream" in r["message"]]
    assert (
        lines and "s-5" not in lines[-1] and "[hidden]" in lines[-1]
    )  # the public log names no conversation


def test_it_sends_keep_alive_comments_while_the_upstream_is_quiet(fake_upstream: FakeUpstream) -> None:
    server = LiveServer(
        {"LLM_BASE_URL": fake_upstream.url, "LLM_API_KEY": SECRET, "SSE_KEEPALIVE_SECONDS": "0.2"}
    )
    try:
        fake_upstream.queue(Reply(chunks=["a", "b"], chunk_delay=0.7))
        with (
            httpx.Client(base_url=server.url, timeout=10) as http,
            stream_chat(http, {"message": "q"}) as response,
        ):
            parts = list(response.iter_raw())
    finally:
        server.stop()
    body = b"".join(parts)
    assert body.index(b"event: delta") < body.index(b": keep-alive\n\n") < body.rindex(b"event: delta")
    assert 2 <= body.count(b": keep-alive\n\n") <= 4  # 0.7 s quiet, one every 0.2 s
    assert body.rstrip().split(b"\n\n")[-1].startswith(b"event: done")


async def test_django_s_own_client_gets_the_frames_without_the_edge(fake_upstream: FakeUpstream) -> None:
    """Outside the edge (Django's test client) an event stream is an ordinary streaming answer."""
    from django.test import AsyncClient

    fake_upstream.queue(Reply(chunks=["a", "b"]))
    response = await AsyncClient().post(
        "/chat/message", {"message": "q", "stream": True}, content_type="application/json"
    )
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join([part async for part in response])
    assert body.startswith(b'event: delta\ndata: {"delta":"a"}\n\nevent: delta\ndata: {"delta":"b"}\n\n')
    assert body.rstrip().split(b"\n\n")[-1].startswith(b"event: done")


async def test_it_ends_with_an_error_frame_when_the_store_fails_at_the_end(
    fake_upstream: FakeUpstream, monkeypatch: Any
) -> None:
    from django.test import AsyncClient

    from core.errors import StoreUnavailable
    from stores.local import LocalStore

    async def broken_append(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable()

    monkeypatch.setattr(LocalStore, "append", broken_append)
    fake_upstream.queue(Reply(chunks=["a", "b"]))
    response = await AsyncClient().post(
        "/chat/message", {"message": "q", "stream": True}, content_type="application/json"
    )
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join([part async for part in response])
    last = body.rstrip().split(b"\n\n")[-1]
    assert last.startswith(b"event: error") and b"store_unavailable" in last


def disconnects(http: httpx.Client) -> int:
    count: int = http.get("/chat/health").json()["usage"]["errors_by_kind"].get("client_disconnected", 0)
    return count


def test_it_counts_a_stream_the_client_abandoned(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    before = disconnects(http)
    fake_upstream.queue(Reply(chunks=[f"w{n}" for n in range(40)], chunk_delay=0.05))
    with stream_chat(http, {"message": "q"}) as response:
        for line in response.iter_lines():
            if line.startswith("event: delta"):
                break
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and disconnects(http) == before:
        time.sleep(0.05)
    assert disconnects(http) == before + 1


NOT_EVENT_STREAMS = [
    (
        Reply(body=b"<html>Bad gateway</html>", headers={"Content-Type": "text/html"}),
        "upstream_invalid_response",
    ),
    (Reply(body={"error": {"code": 502, "message": "provider down"}}), "upstream_error"),
    (Reply(body={"id": "x", "choices": [{"message": {"content": "hi"}}]}), "upstream_invalid_response"),
]


@pytest.mark.parametrize(("reply", "code"), NOT_EVENT_STREAMS, ids=["html", "json-error", "json-reply"])
def test_it_answers_502_before_the_stream_when_the_upstream_sends_no_event_stream(
    http: httpx.Client, fake_upstream: FakeUpstream, reply: Reply, code: str
) -> None:
    for path, body in (
        ("/chat/message", {"message": "q", "conversation_id": "s-html", "stream": True}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}], "stream": True}),
        ("/v1/responses", {"input": "q", "stream": True}),
    ):
        fake_upstream.queue(Reply(**{**reply.__dict__, "headers": dict(reply.headers)}))
        response = http.post(path, json=body)
        assert response.status_code == 502, path
        assert response.headers["content-type"] == "application/json"
        text = response.text
        assert code in text and "upstream_stream_cut" not in text
        assert "<html>" not in text and "provider down" not in text
    assert http.get("/chat/conversations/s-html").status_code == 404
