"""The store's pipelined script connection (stores/redis_wire.py) against a real redis-server: what a
URL names (password, user, database, Unix socket), answers kept in order under concurrency, a
forgotten script loaded again, a broken connection replaced, and a stalled Redis answered with a
timeout that leaves the connection in order."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stores import redis_wire
from stores.base import Count
from stores.redis_store import RedisStore
from stores.redis_wire import WireClient
from tests.conftest import RedisServer, require_program


class Script:
    """What WireClient needs of a script (redis-py's Script has the same two attributes)."""

    def __init__(self, body: str) -> None:
        self.script = body
        self.sha = "0" * 40  # unknown to Redis: the first call loads it


ECHO = "return {KEYS[1], ARGV[1]}"
INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with a password, a second user and a Unix socket."""
    binary = require_program("redis-server", "redis-server")
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(
        binary,
        tmp_path,
        options=(
            "--requirepass",
            "wire-secret",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
        ),
    ).start()
    admin = redis.Redis(port=server.port, password="wire-secret")
    admin.acl_setuser(
        "alice", enabled=True, passwords=["+alice-secret"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    admin.close()
    server.socket_path = socket_path  # type: ignore[attr-defined]
    yield server
    server.stop()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_it_speaks_to_the_database_and_with_the_credentials_its_url_names(guarded: RedisServer) -> None:
    socket_path = guarded.socket_path  # type: ignore[attr-defined]
    urls = {
        f"redis://:wire-secret@127.0.0.1:{guarded.port}/3": 3,
        f"redis://alice:alice-secret@127.0.0.1:{guarded.port}/0": 0,
        f"unix://:wire-secret@{socket_path}?db=5": 5,
    }
    for url, db in urls.items():

        async def incr(url: str = url) -> Any:
            client = WireClient(url, timeout=3)
            try:
                return await client.evalsha(Script(INCR), ["wire-counter"], [7])
            finally:
                client.close()

        assert run(incr()) == 7
        direct = redis.Redis(port=guarded.port, password="wire-secret", db=db)
        assert direct.get("wire-counter") == b"7"  # in the database the URL named, and no other
        direct.delete("wire-counter")
        direct.close()

    async def refused() -> None:
        client = WireClient(f"redis://:not-it@127.0.0.1:{guarded.port}/0", timeout=3)
        try:
            await client.evalsha(Script(INCR), ["wire-counter"], [1])
        finally:
            client.close()

    with pytest.raises(ResponseError) as refusal:
        run(refused())
    assert "not-it" not in str(refusal.value)


def test_it_answers_each_of_many_concurrent_calls_with_its_own_answer(redis_server: RedisServer) -> None:
    async def many() -> list[Any]:
        client = WireClient(redis_server.url, timeout=3)
        script = Script(ECHO)
        try:
            return await asyncio.gather(*(client.evalsha(script, [f"k{n}"], [n]) for n in range(500)))
        finally:
            client.close()

    assert run(many()) == [[f"k{n}".encode(), str(n).encode()] for n in range(500)]


def test_it_loads_a_script_again_when_redis_has_forgotten_it(redis_server: RedisServer) -> None:
    async def twice() -> list[Any]:
        client = WireClient(redis_server.url, timeout=3)
        script = Script(ECHO)
        try:
            first = await client.evalsha(script, ["a"], ["1"])
            redis.Redis(port=redis_server.port).script_flush()
            return [first, await client.evalsha(script, ["b"], ["2"])]
        finally:
            client.close()

    assert run(twice()) == [[b"a", b"1"], [b"b", b"2"]]


def test_it_sends_again_on_a_fresh_connection_when_the_old_one_broke(redis_server: RedisServer) -> None:
    async def across_a_kill() -> list[Any]:
        client = WireClient(redis_server.url, timeout=3)
        script = Script(ECHO)
        try:
            first = await client.evalsha(script, ["a"], ["1"])
            redis.Redis(port=redis_server.port).client_kill_filter(skipme=True, _type="normal")
            return [first, await client.evalsha(script, ["b"], ["2"])]
        finally:
            client.close()

    assert run(across_a_kill()) == [[b"a", b"1"], [b"b", b"2"]]


def test_it_says_so_when_redis_cannot_be_reached(redis_server: RedisServer) -> None:
    async def nowhere() -> None:
        client = WireClient("redis://127.0.0.1:1/0", timeout=3)
        await client.evalsha(Script(ECHO), ["a"], ["1"])

    with pytest.raises(RedisConnectionError):
        run(nowhere())


def test_a_stalled_redis_times_out_and_the_next_call_gets_its_own_answer(redis_server: RedisServer) -> None:
    """SIGSTOP: the call in flight times out (never sent again: Redis may run it) and its connection is
    dropped (a silent connection may be half-open); once Redis resumes, the next call goes down a
    fresh connection and gets its own answer, whether or not Redis ran the one that timed out."""
    assert redis_server.process is not None
    pid = redis_server.process.pid

    async def stalled() -> list[Any]:
        client = WireClient(redis_server.url, timeout=0.3)
        script = Script(INCR)
        try:
            await client.evalsha(script, ["stall"], [1])
            first = client._connection
            os.kill(pid, signal.SIGSTOP)
            try:
                with pytest.raises(RedisTimeoutError):
                    await client.evalsha(script, ["stall"], [10])
            finally:
                os.kill(pid, signal.SIGCONT)
            assert first is not None and first.lost  # dropped, not kept for the next call
            await asyncio.sleep(0.2)
            return [await client.evalsha(script, ["stall"], [100])]
        finally:
            client.close()

    # 1 + 100, or 1 + 10 + 100 if Redis read the timed-out call before the dropped connection's reset
    assert run(stalled()) in ([101], [111])
    redis.Redis(port=redis_server.port).delete("stall")


def test_it_serves_each_event_loop_on_a_connection_of_its_own(redis_server: RedisServer) -> None:
    client = WireClient(redis_server.url, timeout=3)
    script = Script(ECHO)
    try:
        assert run(client.evalsha(script, ["a"], ["1"])) == [b"a", b"1"]
        assert run(client.evalsha(script, ["b"], ["2"])) == [b"b", b"2"]  # a new loop, a new connection
    finally:
        client.close()


async def test_a_give_back_sent_twice_is_added_once(redis_server: RedisServer) -> None:
    """Redis ran a budget's give-back, the connection broke before its answer: the store sends it again
    on a fresh connection, and it is added once (a BATCH; ADMIT, which holds, would add it twice)."""
    store = RedisStore(redis_server.url.replace("/0", "/6"), prefix="giveback:")
    await store.flush()
    original = redis_wire._Connection.data_received
    dropped: list[int] = []

    def drop_first_answer(self: Any, data: bytes) -> None:
        if not dropped:
            dropped.append(1)
            self._fail(RedisConnectionError("connection to Redis lost"))
            return
        original(self, data)

    try:
        assert (await store.admit([Count("budget:x", 100, 3600, cap=1000)])).counts[0][0] == 100
        with mock.patch.object(redis_wire._Connection, "data_received", drop_first_answer):
            await store.settle([Count("budget:x", -50, 3600)])
        assert dropped and (await store.admit([Count("budget:x", 0, 3600)])).counts[0][0] == 50
    finally:
        await store.flush()
        await store.aclose()
