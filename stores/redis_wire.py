"""One pipelined connection to a single Redis for the store's scripts: every request's script calls go
down one socket, their answers come back in order.

Why not redis-py for these: under uvloop, redis-py 8.1 spends about 70 µs of the worker's CPU on
every command (checking a connection out of its pool and back, a timer per send and per read, its
observability hooks), and a turn makes two; coredis 6.9 measured 205 µs and valkey-glide 2.5 76 µs
(with a thread of its own on our two cores). This connection spends about 17 µs: hiredis (the C
library redis-py itself uses) packs each command and parses each answer, and there is nothing else.
A pipelined connection also needs no pool to wait on: a thousand requests in flight share it. Every
other command of the store still goes through redis-py.

Errors are redis-py's own classes, so the store treats both alike: a connection that breaks fails its
commands in flight with ConnectionError, and each is sent once more on a fresh connection (every
script is safe to send twice, see stores.redis_store); a command not answered within `timeout` fails
with TimeoutError and is never sent again (Redis may have run it); an error reply is ResponseError
(NoScriptError when Redis has forgotten a script, which is then loaded again).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Connection(asyncio.Protocol):
    """One socket: commands are written as they come, and each answer settles the oldest waiter."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's subclasses

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (answer := self.reader.gets()) is not False:
            if not self.waiting:  # an answer nobody asked for: the stream is not Redis's
                self._fail(RedisConnectionError("unexpected answer from Redis"))
                return
            waiter = self.waiting.popleft()
            if not waiter.done():  # a waiter that timed out has gone: its answer is dropped
                waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError("connection to Redis lost"))

    def _fail(self, error: Exception) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        if self.transport is None or self.lost or self.transport.is_closing():
            raise RedisConnectionError("connection to Redis lost")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        self.transport.write(hiredis.pack_command(args))
        return waiter

    def abandon(self) -> None:
        """Drop the connection: a command got no answer in time, so it may be half-open (a failover or a
        partition sends no reset) and every later command would wait as long. What is still waiting
        fails with ConnectionError and is sent again on a fresh connection (every script is safe to
        send twice); the command that timed out is not (see WireClient)."""
        self._fail(RedisConnectionError("Redis did not answer in time: connection dropped"))

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


def _tls(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS context the URL's options ask for, read as redis-py reads them (ssl_cert_reqs,
    ssl_ca_certs, ssl_ca_path, ssl_certfile, ssl_keyfile, ssl_password, ssl_check_hostname), so the
    scripts' connection and redis-py's own connect alike."""
    context = ssl.create_default_context(
        cafile=options.get("ssl_ca_certs"), capath=options.get("ssl_ca_path")
    )
    if options.get("ssl_certfile"):
        context.load_cert_chain(
            options["ssl_certfile"], options.get("ssl_keyfile"), password=options.get("ssl_password")
        )
    wanted = str(options.get("ssl_cert_reqs", "required")).lower().removeprefix("cert_")
    check_hostname = options.get("ssl_check_hostname")
    if wanted in ("none", "optional") or check_hostname is False or str(check_hostname).lower() == "false":
        context.check_hostname = False
    if wanted == "none":
        context.verify_mode = ssl.CERT_NONE
    elif wanted == "optional":
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


class Unreachable(RedisConnectionError):
    """No connection to Redis could be made (nothing was sent)."""


class WireClient:
    """Script calls (EVALSHA) to one Redis named by a redis://, rediss:// or unix:// URL, over one
    pipelined connection, opened when first needed and again after it breaks. `address` (host, port)
    names another server with the URL's credentials and TLS options: a node of a cluster."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        connect_timeout: float = 1.0,
        address: tuple[str, int] | None = None,
    ) -> None:
        self._options: dict[str, Any] = dict(parse_url(url))
        if address is not None:
            self._options.pop("path", None)
            self._options["host"], self._options["port"] = address
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the connection belongs to

    async def evalsha(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        """Run a registered script (redis-py's Script: its `sha` and `script`), loading it when Redis
        does not know it; sent once more on a fresh connection when the first one breaks."""
        try:
            return await self._call_retrying("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            script.sha = (await self._call_retrying("SCRIPT", "LOAD", script.script)).decode()
            return await self._call_retrying("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _call_retrying(self, *args: Any) -> Any:
        try:
            return await self._call(args)
        except Unreachable:  # nothing was sent: one more attempt to connect
            return await self._call(args)
        except RedisConnectionError:  # it may have run: no longer Unreachable, whatever comes next
            try:
                return await self._call(args)
            except Unreachable as exc:
                raise RedisConnectionError(str(exc)) from None

    async def _call(self, args: tuple[Any, ...]) -> Any:
        connection, loop = self._connection, asyncio.get_running_loop()
        if connection is None or connection.lost or loop is not self._loop:
            connection = await self._connect(loop)
        waiter = connection.send(args)
        timer = loop.call_at(loop.time() + self._timeout, _expire, waiter, connection)
        try:
            answer = await waiter
        finally:
            timer.cancel()
        if isinstance(answer, hiredis.ReplyError):
            raise BaseParser.parse_error(str(answer))  # NoScriptError, MovedError... as redis-py's
        return answer

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        if loop is not self._loop:  # a connection (and a lock) serves the loop it was made on only
            self._loop, self._connection, self._connecting = loop, None, asyncio.Lock()
        assert self._connecting is not None
        try:
            # The wait for another caller's attempt counts too: callers never queue up for attempts one
            # after another while Redis is unreachable; each gives up within connect_timeout.
            async with asyncio.timeout(self._connect_timeout), self._connecting:
                if self._connection is not None and not self._connection.lost:
                    return self._connection
                self._connection = await self._open()
                return self._connection
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"cannot connect to Redis: {type(exc).__name__}") from None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        options = self._options
        connection: _Connection
        if "path" in options:
            _, connection = await loop.create_unix_connection(_Connection, options["path"])
        else:
            tls = _tls(options) if options.get("connection_class") is SSLConnection else None
            _, connection = await loop.create_connection(
                _Connection, options.get("host", "localhost"), options.get("port", 6379), ssl=tls
            )
        # the connection's own set-up, answered before any command of the store is sent on it
        hello: list[tuple[Any, ...]] = []
        if options.get("password") is not None:
            user = options.get("username")
            hello.append(("AUTH", user, options["password"]) if user else ("AUTH", options["password"]))
        if options.get("db"):
            hello.append(("SELECT", options["db"]))
        try:
            for command in hello:
                answer = await connection.send(command)
                if isinstance(answer, hiredis.ReplyError):
                    raise ResponseError(str(answer).split("\n")[0])
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        if self._connection is not None and self._loop is not None and not self._loop.is_closed():
            self._connection.close()  # (a closed loop has closed its sockets already)
        self._connection = None


def _expire(waiter: asyncio.Future[Any], connection: _Connection) -> None:
    if not waiter.done():
        waiter.set_exception(RedisTimeoutError("Redis did not answer in time"))
        connection.abandon()
