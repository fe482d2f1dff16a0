"""The ASGI edge: everything between uvicorn and Django, and the one place that bends Django.

In order, for each connection: static files (ServeStatic, before Django, so API requests never pass
through it); other protocols refused; then, for HTTP, the request id, the access line and metrics,
the body-size limit, and Django.

The bend. Django 5.2's ASGIHandler runs each request inside a ThreadSensitiveContext and closes each
response with `sync_to_async(response.close)`: that starts a thread per request for work that does no
I/O here (no database; the request_finished receivers left are in-memory). `prepare_django()` makes
the close run inline, and refuses to start if the Django version or the code it relies on changed.
`SubclassedHandler` is the supported alternative (no per-request context, one shared thread), chosen
with ASGI_EDGE=thread; `make bench` measures both side by side (its `edge` phase).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import django
import django.core.handlers.asgi as django_asgi
from asgiref.sync import sync_to_async as _sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponseBase

from core import metrics, redact, telemetry

DJANGO_WRITTEN_FOR = (5, 2)
# request_finished receivers that may run inline on the event loop: they do no I/O.
INLINE_SAFE_RECEIVERS = {"django.core.cache.close_caches", "django.core.handlers.base.reset_urlconf"}
TOO_LARGE = "gateway.too_large"  # set in the scope when the body is over MAX_REQUEST_BYTES

access_log = logging.getLogger("gateway.access")
logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _inline_response_close(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Stands in for `sync_to_async` inside django.core.handlers.asgi only: a response's close() runs
    inline; anything else goes to the real sync_to_async."""
    if getattr(func, "__name__", "") == "close" and isinstance(
        getattr(func, "__self__", None), HttpResponseBase
    ):

        async def close() -> None:
            func()

        return close
    return _sync_to_async(func, *args, **kwargs)


def _receiver_name(receiver: Any) -> str:
    target = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


def request_finished_receivers() -> set[str]:
    return {_receiver_name(r[1]) for r in signals.request_finished.receivers}


def prepare_django() -> None:
    """Called once from the AppConfig: no database signals, and the inline close, checked."""
    if django.VERSION[:2] != DJANGO_WRITTEN_FOR:
        raise ImproperlyConfigured(
            f"config/edge.py was written for Django {DJANGO_WRITTEN_FOR}; check it against Django "
            f"{django.get_version()} before upgrading"
        )
    if settings.DATABASES:
        raise ImproperlyConfigured("config/edge.py assumes there is no database (DATABASES is empty)")
    from django.db import close_old_connections, reset_queries

    signals.request_started.disconnect(reset_queries)
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    unsafe = request_finished_receivers() - INLINE_SAFE_RECEIVERS
    if unsafe:
        raise ImproperlyConfigured(
            f"request_finished receivers would run on the event loop: {sorted(unsafe)}"
        )
    if "sync_to_async(response.close)" not in inspect.getsource(django_asgi.ASGIHandler.handle):
        raise ImproperlyConfigured(
            "Django's ASGIHandler no longer closes responses as config/edge.py expects"
        )
    if settings.ASGI_EDGE == "inline":
        setattr(django_asgi, "sync_to_async", _inline_response_close)  # noqa: B010 (not re-exported)


class SubclassedHandler(django_asgi.ASGIHandler):
    """The supported alternative to the inline close: no per-request ThreadSensitiveContext, so every
    `sync_to_async` runs on one long-lived thread instead of a new one (still one hop per request)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(cast(dict[str, Any], scope), receive, send)  # type: ignore[arg-type]


def django_handler() -> ASGIApp:
    """Django's ASGI handler for the chosen edge (ASGI_EDGE)."""
    handler = SubclassedHandler() if settings.ASGI_EDGE == "thread" else django_asgi.ASGIHandler()
    return cast(ASGIApp, handler)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def finished(scope: Scope, context: dict[str, Any], status: int, elapsed: float) -> None:
    """The access line and the request metrics."""
    route = context.get("route", "unmatched")
    metrics.REQUESTS.labels(scope.get("method", scope["type"]), route, str(status)).inc()
    metrics.REQUEST_SECONDS.labels(route).observe(elapsed)
    client = (scope.get("client") or ("-", 0))[0]
    facts = {k: redact.clean(v) for k, v in context.items() if k not in ("request_id", "route")}
    path = redact.clean(scope["path"])
    method = scope.get("method", scope["type"].upper())
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
        "client": client,
        **facts,
    }
    access_log.info(
        "%s %s %s %.1fms client=%s %s",
        method,
        path,
        status,
        elapsed * 1000,
        client,
        " ".join(f"{k}={v}" for k, v in facts.items()),
        extra={"fields": fields},
    )


class Edge:
    """The ASGI application uvicorn runs."""

    def __init__(self, django_app: ASGIApp) -> None:
        self.django_app = django_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        else:
            await self.refuse(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Request id, access line and metrics around every request."""
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
            elif (
                message["type"] == "http.response.body" and not message.get("more_body", False) and not logged
            ):
                # Before the last byte leaves: whoever reads the answer can already find its access line.
                logged = True
                finished(scope, context, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.django_app(scope, self.sized(scope, receive), send_with_id)
        finally:
            if not logged:
                finished(scope, context, status, time.perf_counter() - started)
            telemetry.request_context.reset(token)

    @staticmethod
    def sized(scope: Scope, receive: Receive) -> Receive:
        """A body over MAX_REQUEST_BYTES is not read further: Django gets what came so far and a flag in
        the scope, and its middleware answers 413 (so the answer has every usual header)."""
        limit = settings.MAX_REQUEST_BYTES
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            scope[TOO_LARGE] = True
        seen = 0
        ended = False

        async def counting_receive() -> Message:
            nonlocal seen, ended
            if ended:  # Django listens for a disconnect while it answers: the rest is never read
                await asyncio.Future()
            if scope.get(TOO_LARGE):
                ended = True
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    scope[TOO_LARGE] = ended = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        return counting_receive

    @staticmethod
    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        """Only HTTP is served: a WebSocket is closed before it opens (uvicorn answers 403)."""
        started = time.perf_counter()
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
        finished(scope, {"route": "unmatched"}, 403, time.perf_counter() - started)

    @staticmethod
    async def lifespan(receive: Receive, send: Send) -> None:
        """Start-up loads the store's snapshot before anything is served and starts saving it; shutdown
        (uvicorn's answer to SIGTERM and SIGINT, once requests have finished) saves it one last time."""
        import upstream
        from stores import snapshot

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await snapshot.start()
                except snapshot.CannotStart as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"Configuration error: {exc}"})
                    return
                except Exception:
                    # Ours, not the operator's: refuse to start, rather than serve without the snapshot
                    # (uvicorn would carry on after an exception here, and skip the shutdown save).
                    logger.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": "start-up failed (see above)"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await snapshot.stop()
                await upstream.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
