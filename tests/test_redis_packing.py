"""The Redis store's connections pack commands with hiredis (stores.redis_store.HiredisPacking): the
same bytes as redis-py's own packing, for every kind of argument the store sends."""

from __future__ import annotations

import redis.asyncio as redis

from stores.redis_store import hiredis_packed


def test_it_packs_commands_as_redis_py_does() -> None:
    ours = hiredis_packed(redis.Connection)()
    theirs = redis.Connection()
    for command in (
        (
            "EVALSHA",
            "0123abcd",
            2,
            "gw:{x}:a",
            b'{"role":"user","content":"h\\u00e9 \xf0\x9f\x98\x80"}',
            0,
            1.5,
        ),
        ("SCRIPT LOAD", "return 1"),
        ("PING",),
        ("SET", "k", "\u00e9t\u00e9 😀", "EX", 60),
    ):
        assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))


def test_it_keeps_the_connection_kind_the_url_asked_for() -> None:
    for url, kind in (
        ("redis://127.0.0.1:6379/0", redis.Connection),
        ("rediss://127.0.0.1:6379/0", redis.SSLConnection),
        ("unix:///tmp/redis.sock", redis.UnixDomainSocketConnection),
    ):
        pool = redis.ConnectionPool.from_url(url)
        assert issubclass(hiredis_packed(pool.connection_class), kind)
