"""The ASGI edge: everything between uvicorn and Django, and the one place that bends Django.

In order, for each connection: static files (ServeStatic, before Django, so API requests never pass
through it); other protocols refused; then, for HTTP, the request id, the access line and metrics,
encoded slashes in the path refused, the body-size limit and read deadline, and Django.

The bend. Django 5.2's ASGIHandler runs each request inside a ThreadSensitiveContext and closes each
response with `sync_to_async(response.close)`: that starts a thread per request for work that does no
I/O here (no database; the request_finished receivers left are in-memory). `prepare_django()` makes
the close run inline, and refuses to start if the Django version or the code it relies on changed.
`SubclassedHandler` is the supported alternative (no per-request context, one shared thread), chosen
with ASGI_EDGE=thread; `make bench` measures both side by side (its `edge` phase).

A second, smaller bend: once an answer is complete, the disconnect the server reports is not passed
on, so Django cancels its listener instead of raising RequestAborted (whose traceback would keep each
request's body and answer alive in a reference cycle until a full garbage collection).
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
from django.http import HttpRequest, HttpResponseBase
from django.urls import ResolverMatch, get_resolver

from core import lifetime, metrics, redact, telemetry

DJANGO_WRITTEN_FOR = (5, 2)
# request_finished receivers that may run inline on the event loop: they do no I/O.
INLINE_SAFE_RECEIVERS = {"django.core.cache.close_caches", "django.core.handlers.base.reset_urlconf"}
# Set in the scope: (status, code, message) of a request the edge refuses; the last middleware answers
# it, so that the answer has every usual header. Routing never sees such a request.
REFUSED = "gateway.refused"
# Set in the scope by config/protocol.py: the loop time by which the whole request must have arrived.
READ_DEADLINE = "gateway.read_deadline"
MODEL_PATH = b"/v1/models/"

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
    if any(db.get("ENGINE", "") != "django.db.backends.dummy" for db in settings.DATABASES.values()):
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
    handle = inspect.getsource(django_asgi.ASGIHandler.handle)
    if "sync_to_async(response.close)" not in handle:
        raise ImproperlyConfigured(
            "Django's ASGIHandler no longer closes responses as config/edge.py expects"
        )
    if "task.cancel()" not in handle:
        raise ImproperlyConfigured(
            "Django's ASGIHandler no longer cancels its disconnect listener as config/edge.py expects"
        )
    send_response = inspect.getsource(django_asgi.ASGIHandler.send_response)
    head, frames = send_response.find('"http.response.start"'), send_response.find("aiter(response)")
    if not 0 <= head < frames:
        raise ImproperlyConfigured(
            "Django's ASGIHandler no longer sends a streaming answer's head before iterating it, as "
            "config/edge.py Handler expects"
        )
    if settings.ASGI_EDGE == "inline":
        django_asgi.sync_to_async = _inline_response_close  # type: ignore[attr-defined]


class Handler(django_asgi.ASGIHandler):
    """Django's handler, handing ASGI's `send` to a streaming answer that takes it (`asgi_send`, see
    gateway/sse.py EventStream): its frames then go straight out, one `send` each, instead of through
    Django's generators around every part. The head, the final empty body, the close and the cancel on
    a client's disconnect stay Django's own."""

    async def send_response(self, response: HttpResponseBase, send: Send) -> None:
        if getattr(response, "streaming", False):
            if hasattr(response, "asgi_send"):
                response.asgi_send = send
        elif "Content-Length" not in response and response.status_code not in NO_CONTENT_LENGTH:
            # its length, so uvicorn frames it by length: an HTTP/1.0 client gets no chunked encoding
            # (RFC 9112 forbids it there), and HTTP/1.1 ones no chunk framing around a known body
            response["Content-Length"] = str(len(response.content))  # type: ignore[attr-defined]
        await super().send_response(response, send)  # type: ignore[arg-type]

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        """Django's, remembered for the paths that are a route's whole text (`v1/chat/completions`: no
        path parameters, not the catch-all): Django tries every route in order and builds its match
        anew each time, 15-40 µs a request here. A match is only read after it is made, so one serves
        every request to its path; routes with parameters are resolved each time."""
        if hasattr(request, "urlconf"):  # a middleware chose another URLconf
            return cast(ResolverMatch, super().resolve_request(request))
        resolver = get_resolver()
        remembered: dict[str, ResolverMatch] = resolver.__dict__.setdefault("gateway_static", {})
        path = request.path_info
        match = remembered.get(path)
        if match is None:
            match = super().resolve_request(request)
            if match.route == path[1:] and not match.args and not match.kwargs:
                remembered[path] = match
        request.resolver_match = match
        return match


NO_CONTENT_LENGTH = frozenset({204, 304})  # answers that must not carry one (RFC 9110)


class SubclassedHandler(Handler):
    """The supported alternative to the inline close: no per-request ThreadSensitiveContext, so every
    `sync_to_async` runs on one long-lived thread instead of a new one (still one hop per request)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)  # type: ignore[arg-type]


def django_handler() -> ASGIApp:
    """Django's ASGI handler for the chosen edge (ASGI_EDGE)."""
    if settings.ASGI_EDGE == "thread":
        return SubclassedHandler()
    return Handler()  # type: ignore[return-value]


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


LOGGED_CHARS = 1024  # of a path or a fact in an access line: /api/hf/logs keeps 1,000 lines


def _short(value: Any) -> Any:
    """A client's text cut to LOGGED_CHARS (a path may be 60 KB, and every line is kept twice: its
    message and its fields)."""
    if isinstance(value, str) and len(value) > LOGGED_CHARS:
        return value[:LOGGED_CHARS] + "..."
    return value


def finished(scope: Scope, context: dict[str, Any], status: int, elapsed: float) -> None:
    """The access line and the request metrics."""
    route = context.get("route", "unmatched")
    metrics.REQUESTS.labels(scope.get("method", scope["type"]), route, str(status)).inc()
    metrics.REQUEST_SECONDS.labels(route).observe(elapsed)
    if "key" in context:
        metrics.REQUESTS_BY_KEY.labels(context["key"]).inc()
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = context.get("client", "-")
    facts = {
        k: _short(redact.clean(v)) for k, v in context.items() if k not in ("request_id", "route", "client")
    }
    path = _short(redact.clean(scope["path"]))
    method = scope.get("method", scope["type"].upper())
    fields = {
        "method": method,
        "path": path,
        "route": route,
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


def _too_large() -> tuple[int, str, str]:
    return (413, "request_too_large", f"The request body is larger than {settings.MAX_REQUEST_BYTES} bytes.")


async def announce() -> None:
    """One start-up line saying what this process is connected to; a store that does not answer is a
    WARNING (and /ready says so), not a surprise on the first request."""
    from gateway.status import readiness

    state = await readiness()
    store = f"{state.store} ({'answering' if state.ready else 'NOT answering'})"
    key = "set" if settings.LLM_API_KEY else ("missing" if not state.api_available else "not needed")
    level = logging.INFO if state.ready and state.api_available else logging.WARNING
    logging.getLogger("gateway").log(
        level, "starting: upstream %s, key %s, store %s", settings.LLM_BASE_URL, key, store
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
        context: dict[str, Any] = {
            "request_id": telemetry.request_id_for(_header(scope, b"x-request-id")),
            "client": (scope.get("client") or ("-", 0))[0],
        }
        token = telemetry.request_context.set(context)
        left_open: list[lifetime.Closer] = []
        opened_token = lifetime.opened.set(left_open)
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

        raw_path = scope.get("raw_path") or b""
        if (b"%2f" in raw_path or b"%2F" in raw_path) and not raw_path.startswith(MODEL_PATH):
            # Decoded, it would route as a slash: a front proxy that hides paths by prefix sees another path.
            # A model id (`openai/gpt-4o`) is the one place OpenAI's SDKs send one, under a prefix that
            # decoding cannot change.
            scope[REFUSED] = (400, "bad_request", "Encoded slashes (%2F) are not allowed in a path.")
        bounded_receive = self.bounded(scope, receive)

        async def receive_until_answered() -> Message:
            message = await bounded_receive()
            if message["type"] == "http.disconnect" and logged:
                # The answer is complete; Django listens for a disconnect only to stop a view still
                # running. Its RequestAborted would now tie the request (body, answer and all) into a
                # reference cycle through its traceback, kept until the next full garbage collection:
                # under load, tens of MiB. Django cancels this wait itself once the view is done.
                await asyncio.Future()
            return message

        try:
            await self.django_app(scope, receive_until_answered, send_with_id)
        finally:
            try:
                if left_open:
                    await lifetime.close_all(left_open)
            finally:
                lifetime.opened.reset(opened_token)
                if not logged:
                    finished(scope, context, status, time.perf_counter() - started)
                telemetry.request_context.reset(token)

    @staticmethod
    def bounded(scope: Scope, receive: Receive) -> Receive:
        """The body, bounded in size and time. Over MAX_REQUEST_BYTES, or not all in by the read deadline
        (REQUEST_READ_TIMEOUT from the request's start), it is not read further: Django gets what came
        so far and a refusal in the scope, which its last middleware answers (413, 408)."""
        limit = settings.MAX_REQUEST_BYTES
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            scope[REFUSED] = _too_large()
        deadline = (
            scope.get(READ_DEADLINE) or asyncio.get_running_loop().time() + settings.REQUEST_READ_TIMEOUT
        )
        seen = 0
        body_done = refused = False

        async def bounded_receive() -> Message:
            nonlocal seen, body_done, refused
            if body_done:  # after the body, Django listens for a disconnect while it answers: no deadline
                return await receive()
            if refused:  # the rest of a refused body is never read
                await asyncio.Future()
            if REFUSED in scope:
                refused = True
                return {"type": "http.request", "body": b"", "more_body": False}
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refused = True
                scope[REFUSED] = (
                    408,
                    "request_timeout",
                    f"The request was not received within {settings.REQUEST_READ_TIMEOUT:g} seconds.",
                )
                return {"type": "http.request", "body": b"", "more_body": False}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    scope[REFUSED] = _too_large()
                    return {"type": "http.request", "body": b"", "more_body": False}
                body_done = not message.get("more_body", False)
            return message

        return bounded_receive

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
                await announce()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await snapshot.stop()
                await upstream.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
