"""ASGI entry point: request-size limit, the lifespan protocol (closing the upstream client), Django."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django.core.handlers.asgi as django_asgi
from django.core.asgi import get_asgi_application
from django.http import HttpResponseBase


def _inline_response_close(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Django's ASGI handler closes every response through sync_to_async: two new threads per request.
    Closing our responses does no I/O (no database, in-memory or async stores), so do it inline."""
    if getattr(func, "__name__", "") == "close" and isinstance(
        getattr(func, "__self__", None), HttpResponseBase
    ):

        async def close() -> None:
            func()

        return close
    return _sync_to_async(func, *args, **kwargs)


_sync_to_async = django_asgi.sync_to_async
django_asgi.sync_to_async = _inline_response_close

# Settings load here (a bad one stops start-up with one line) before anything else touches them.
django_application = get_asgi_application()

# There is no database: its per-request signal receivers would only cost a thread hop each.
from django.core import signals  # noqa: E402
from django.db import close_old_connections, reset_queries  # noqa: E402

signals.request_started.disconnect(reset_queries)
signals.request_started.disconnect(close_old_connections)
signals.request_finished.disconnect(close_old_connections)

from django.conf import settings  # noqa: E402

from config import metrics, redact, telemetry  # noqa: E402
from config.errors import error_response  # noqa: E402

access_log = logging.getLogger("gateway.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def too_large(scope: Scope, send: Send) -> None:
    """413 in the shape the path expects, with the headers Django's middleware would have added."""
    limit = settings.MAX_REQUEST_BYTES
    response = error_response(
        413, "request_too_large", f"The request body is larger than {limit} bytes.", path=scope["path"]
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["X-Frame-Options"] = "DENY"
    response["Referrer-Policy"] = "same-origin"
    origin = _header(scope, b"origin")
    if origin and (
        settings.CORS_ALLOW_ALL_ORIGINS or origin in getattr(settings, "CORS_ALLOWED_ORIGINS", [])
    ):
        response["Access-Control-Allow-Origin"] = "*" if settings.CORS_ALLOW_ALL_ORIGINS else origin
    headers = [(k.lower().encode(), v.encode()) for k, v in response.items()]
    headers.append((b"content-length", str(len(response.content)).encode()))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    """Request id, access line and metrics around every request; bodies over MAX_REQUEST_BYTES refused."""
    context: dict[str, Any] = {"request_id": telemetry.request_id_for(_header(scope, b"x-request-id"))}
    token = telemetry.request_context.set(context)
    started = time.perf_counter()
    status = 0
    logged = False

    async def send_with_id(message: Message) -> None:
        nonlocal status, logged
        if message["type"] == "http.response.start":
            status = message["status"]
            message["headers"] = [
                *message.get("headers", []),
                (b"x-request-id", context["request_id"].encode()),
            ]
        elif message["type"] == "http.response.body" and not message.get("more_body", False) and not logged:
            # Before the last byte leaves: whoever reads the answer can already find its access line.
            logged = True
            finished(scope, context, status, time.perf_counter() - started)
        await send(message)

    try:
        await sized(scope, receive, send_with_id)
    finally:
        if not logged:
            finished(scope, context, status, time.perf_counter() - started)
        telemetry.request_context.reset(token)


def finished(scope: Scope, context: dict[str, Any], status: int, elapsed: float) -> None:
    """The access line and the request metrics."""
    route = context.get("route", "unmatched")
    metrics.REQUESTS.labels(scope["method"], route, str(status)).inc()
    metrics.REQUEST_SECONDS.labels(route).observe(elapsed)
    client = (scope.get("client") or ("-", 0))[0]
    facts = {k: redact.clean(v) for k, v in context.items() if k not in ("request_id", "route")}
    path = redact.clean(scope["path"])
    fields = {
        "method": scope["method"],
        "path": path,
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
        "client": client,
        **facts,
    }
    access_log.info(
        "%s %s %s %.1fms client=%s %s",
        scope["method"],
        path,
        status,
        elapsed * 1000,
        client,
        " ".join(f"{k}={v}" for k, v in facts.items()),
        extra={"fields": fields},
    )


async def sized(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse bodies over MAX_REQUEST_BYTES without reading them whole."""
    limit = settings.MAX_REQUEST_BYTES
    declared = _header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        await too_large(scope, send)
        return
    seen = 0
    overflow = False

    async def counting_receive() -> Message:
        nonlocal seen, overflow
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                overflow = True
                return {"type": "http.disconnect"}  # Django stops reading and answers nothing
        return message

    await django_application(scope, counting_receive, send)
    if overflow:
        await too_large(scope, send)


async def lifespan(receive: Receive, send: Send) -> None:
    from chat import upstream

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await upstream.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await django_application(scope, receive, send)
