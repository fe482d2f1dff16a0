"""The streaming path's own parts: the upstream's SSE read by network chunk (any split, any line ending),
the read deadline's single timer, and the pump that sends frames with back-pressure and keep-alives."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

import upstream
from gateway import sse, turns
from stores import Kind, get_store
from tests.fake_upstream import FakeUpstream, Reply, completion_body


class Parts(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            await asyncio.sleep(0)
            yield part


def events(texts: list[str], newline: bytes) -> bytes:
    body = b": OPENROUTER PROCESSING" + newline * 2
    for n, text in enumerate(texts):
        choice: dict[str, Any] = {"index": 0, "delta": {"content": text}}
        chunk: dict[str, Any] = {"model": "m/answered", "choices": [choice]}
        if n == len(texts) - 1:
            choice["finish_reason"] = "stop"
            chunk["usage"] = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        body += b"event: message" + newline + b"data: " + orjson.dumps(chunk) + newline * 2
    return body + b"data: [DONE]" + newline * 2 + b"data: not json, after the end" + newline * 2


async def read_all(body: bytes, size: int) -> tuple[list[str], upstream.UpstreamStream]:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    response = httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=Parts(parts))
    stream = upstream.UpstreamStream(response, "m/asked")
    texts = [upstream.delta_text(chunk) async for chunk in stream.chunks()]
    return texts, stream


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 2, 7, 64, 100_000])
async def test_it_reads_the_same_chunks_however_the_network_splits_them(newline: bytes, size: int) -> None:
    said = ["Hel", "lo ", "wörld", "!"]
    texts, stream = await read_all(events(said, newline), size)
    assert texts == said
    assert stream.model == "m/answered"
    assert stream.usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert stream.finish_reason == "stop"


async def test_it_reports_a_cut_when_the_body_ends_mid_event() -> None:
    body = events(["a", "b"], b"\n").split(b"data: [DONE]")[0]
    body = body[: body.rindex(b"data:") + 20]  # the last chunk (with its finish_reason) cut short
    with pytest.raises(upstream.UpstreamError) as caught:
        await read_all(body, 16)
    assert caught.value.code in ("upstream_stream_cut", "upstream_invalid_response")


async def test_a_deadline_that_falls_as_data_arrives_leaves_no_cancellation_behind() -> None:
    """The stream's single timer cancels a read still waiting at its deadline; when the data and the
    deadline come in the same turn of the loop, the read either returns the data or times out, and
    the task is never left with a cancellation to trip over later."""
    loop = asyncio.get_running_loop()
    outcomes = set()
    for offset in (-0.004, -0.002, 0.0, 0.002, 0.004):
        ready: asyncio.Future[bytes] = loop.create_future()

        async def source(ready: asyncio.Future[bytes] = ready) -> AsyncIterator[bytes]:
            yield await ready

        watch = upstream._StreamWatch()
        deadline = loop.time() + 0.05
        loop.call_at(deadline + offset, ready.set_result, b"x")
        loop.call_at(deadline - 0.02, time.sleep, 0.04)  # the loop is late: both fall due together
        try:
            outcomes.add(await watch.read(aiter(source()), deadline))
        except TimeoutError:
            outcomes.add(b"timeout")
        await asyncio.sleep(0.01)  # a cancellation left behind would be raised here
        watch.close()
    assert outcomes <= {b"x", b"timeout"}


async def test_a_quiet_read_times_out_and_a_busy_one_does_not() -> None:
    loop = asyncio.get_running_loop()

    async def slow() -> AsyncIterator[bytes]:
        await asyncio.sleep(10)
        yield b"never"

    watch = upstream._StreamWatch()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await watch.read(aiter(slow()), started + 0.05)
    assert loop.time() - started < 1.0

    async def steady() -> AsyncIterator[bytes]:
        for n in range(5):
            await asyncio.sleep(0.02)
            yield b"%d" % n

    source = aiter(steady())
    got = [await watch.read(source, loop.time() + 0.1) for _ in range(5)]  # each read moves it on
    assert got == [b"0", b"1", b"2", b"3", b"4"]
    watch.close()


class Sent:
    """ASGI's send as the pump sees it: records each body part (with the loop time it was sent);
    `hold` makes the next sends wait until released (a slow client)."""

    def __init__(self) -> None:
        self.parts: list[tuple[bytes, float]] = []
        self.hold: asyncio.Event | None = None

    async def __call__(self, message: dict[str, Any]) -> None:
        assert message["type"] == "http.response.body" and message["more_body"] is True
        if self.hold is not None:
            await self.hold.wait()
        self.parts.append((message["body"], asyncio.get_running_loop().time()))

    @property
    def bodies(self) -> list[bytes]:
        return [body for body, _ in self.parts]


async def test_it_sends_each_frame_as_it_comes_and_closes_the_source() -> None:
    closed = False

    async def frames() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            for n in range(3):
                await asyncio.sleep(0.01)
                yield b"f%d\n\n" % n
        finally:
            closed = True

    sent = Sent()
    await sse.pump(frames(), sent)
    assert sent.bodies == [b"f0\n\n", b"f1\n\n", b"f2\n\n"]
    assert closed


async def test_it_stops_reading_while_a_slow_client_holds_the_send() -> None:
    read = 0
    closed = False

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read, closed
        try:
            while True:
                read += 1
                yield b"x"
                await asyncio.sleep(0)
        finally:
            closed = True

    sent = Sent()
    sent.hold = asyncio.Event()
    task = asyncio.ensure_future(sse.pump(endless(), sent))
    await asyncio.sleep(0.05)  # the client takes nothing: nothing more is taken from the upstream
    assert read == 1 and sent.bodies == []
    sent.hold.set()
    await asyncio.sleep(0)
    task.cancel()  # the client goes away
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed and read <= 4


async def test_it_passes_on_the_source_failure_after_the_frames_before_it() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"a"
        raise upstream.UpstreamError("gone", code="upstream_unreachable")

    sent = Sent()
    with pytest.raises(upstream.UpstreamError):
        await sse.pump(failing(), sent)
    assert sent.bodies == [b"a"]


async def test_it_sends_keep_alives_only_while_the_source_is_quiet(settings: Any) -> None:
    settings.SSE_KEEPALIVE_SECONDS = 0.1

    async def quiet() -> AsyncIterator[bytes]:
        yield b"a"
        for _ in range(5):  # busy: a frame every 0.03 s, no keep-alive due
            await asyncio.sleep(0.03)
            yield b"b"
        await asyncio.sleep(0.35)  # quiet: about three keep-alives
        yield b"c"

    sent = Sent()
    await sse.pump(quiet(), sent)
    bodies = sent.bodies
    assert bodies[:6] == [b"a"] + [b"b"] * 5
    assert bodies[-1] == b"c"
    assert 2 <= bodies.count(sse.KEEPALIVE) <= 4 and set(bodies[6:-1]) == {sse.KEEPALIVE}
    quiet_times = [at for _, at in sent.parts][5:-1]  # the last "b", then the keep-alives
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(quiet_times))


async def test_a_frame_waits_for_a_keep_alive_still_being_sent(settings: Any) -> None:
    settings.SSE_KEEPALIVE_SECONDS = 0.05
    order: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        body = message["body"]
        order.append(f"start {body!r}")
        if body == sse.KEEPALIVE:
            await asyncio.sleep(0.1)  # a keep-alive stuck behind a slow client
        order.append(f"end {body!r}")

    async def late() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.07)  # the keep-alive starts at 0.05 and ends at 0.15
        yield b"x"

    await sse.pump(late(), send)
    keepalive = repr(sse.KEEPALIVE)
    assert order[:4] == [f"start {keepalive}", f"end {keepalive}", "start b'x'", "end b'x'"]


async def test_no_keep_alive_goes_out_while_a_slow_client_holds_a_frame(settings: Any) -> None:
    settings.SSE_KEEPALIVE_SECONDS = 0.05
    sends: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        sends.append(message["body"])
        if message["body"] == b"x":
            await asyncio.sleep(0.25)  # the client reads nothing for five keep-alive periods

    async def one() -> AsyncIterator[bytes]:
        yield b"x"

    await sse.pump(one(), send)
    assert sends == [b"x"]


async def test_a_keep_alive_that_fails_is_raised_by_the_next_frame(settings: Any) -> None:
    settings.SSE_KEEPALIVE_SECONDS = 0.03
    sends: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        sends.append(message["body"])
        if message["body"] == sse.KEEPALIVE:
            raise OSError("the client's connection broke")

    async def late() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.15)  # quiet: the first keep-alive fails, and no other is tried
        yield b"x"

    with pytest.raises(OSError, match="broke"):
        await sse.pump(late(), send)
    assert sends == [sse.KEEPALIVE]


def hello() -> upstream.UpstreamCall:
    return upstream.UpstreamCall(
        messages=[{"role": "user", "content": "hi"}],
        model="openai/gpt-4o-mini",
        max_tokens=10,
        temperature=None,
        api_key="sk-test",
        extra={},
    )


async def test_a_stream_asks_for_an_uncompressed_body(fake_upstream: FakeUpstream, settings: Any) -> None:
    """A stream is read as it comes off the network (raw, never decoded): it asks the upstream for an
    uncompressed body, or a provider that compresses event streams would send bytes nobody decodes."""
    settings.LLM_BASE_URL = fake_upstream.url
    fake_upstream.queue(Reply(chunks=["one ", "two"]))
    stream = await upstream.open_stream(hello())
    try:
        texts = [upstream.delta_text(chunk) async for chunk in stream.chunks()]
    finally:
        await stream.aclose()
        await upstream.aclose()
    assert "".join(texts).startswith("one two")
    assert fake_upstream.requests[-1].headers["accept-encoding"] == "identity"


async def test_a_whole_completion_may_come_compressed(fake_upstream: FakeUpstream, settings: Any) -> None:
    """Completions go out on the transport without httpx's client around it: the request still says
    which encodings it takes, and a gzip body is decoded."""
    settings.LLM_BASE_URL = fake_upstream.url
    body = completion_body("fake/gzip", "packed reply")
    fake_upstream.queue(
        Reply(
            body=gzip.compress(orjson.dumps(body)),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
    )
    try:
        completion = await upstream.complete(hello())
    finally:
        await upstream.aclose()
    assert completion.content == "packed reply" and completion.model == "fake/gzip"
    received = fake_upstream.requests[-1]
    assert received.headers["accept-encoding"] == "gzip, deflate"
    assert received.headers["authorization"] == "Bearer sk-test"
    assert received.headers["host"] == fake_upstream.url.split("//")[1].split("/")[0]
    assert received.headers["user-agent"].startswith("python-httpx/")


async def test_a_malformed_answer_is_an_unreachable_provider_not_our_error(settings: Any) -> None:
    """What httpx_aiohttp does not map (here a broken status line) is a failed upstream call: 502."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 two hundred OK\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings.LLM_BASE_URL = f"http://127.0.0.1:{port}/api/v1"
    settings.LLM_MAX_RETRIES = 0
    try:
        for attempt in (upstream.complete, upstream.open_stream):
            with pytest.raises(upstream.UpstreamError) as failed:
                await attempt(hello())
            assert (failed.value.status, failed.value.code) == (502, "upstream_unreachable")
    finally:
        await upstream.aclose()
        server.close()
        await server.wait_closed()


async def test_a_finished_stream_is_stored_with_its_call_even_if_the_client_goes_away_meanwhile() -> None:
    """Once the upstream has sent the whole reply (and been paid), its turn and its call's statistics
    and budget charges are stored to the end, even when the client leaves while that write runs."""
    response = httpx.Response(
        200, headers={"Content-Type": "text/event-stream"}, stream=Parts([events(["Hel", "lo"], b"\n")])
    )
    stream = upstream.UpstreamStream(response, "m/asked")
    call = upstream.UpstreamCall(
        messages=[], model="m/asked", max_tokens=10, temperature=None, api_key="", extra={}
    )
    prepared = turns.PreparedTurn(owner="left-early", conversation_id="finished", call=call)
    store = get_store()
    requests_before = (await store.usage())["requests"]
    commit, writing = store.commit, asyncio.Event()

    async def slow_commit(**parts: Any) -> Any:
        writing.set()
        await asyncio.sleep(0.1)  # the client leaves while the turn is being written
        return await commit(**parts)

    frames = turns._chat_frames(prepared, "hi", stream, done_body=lambda stored: {})
    sent = [await anext(frames), await anext(frames)]  # both deltas
    assert b"Hel" in sent[0] and b"lo" in sent[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "commit", slow_commit)
        last = asyncio.ensure_future(anext(frames))
        await writing.wait()
        last.cancel()  # what the server does to the response when its client goes away
        with pytest.raises(asyncio.CancelledError):
            await last
        await asyncio.sleep(0.2)
    kept = await store.get(Kind.CHAT, "finished", owner="left-early")
    assert kept is not None and [m["content"] for m in kept.messages] == ["hi", "Hello"]
    assert (await store.usage())["requests"] == requests_before + 1
