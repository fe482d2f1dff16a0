"""ASGI entry point: request-size limit, the lifespan protocol (closing the upstream client), Django."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application

# Settings load here (a bad one stops start-up with one line) before anything else touches them.
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402

from config.errors import error_body  # noqa: E402
from config.jsonio import dumps  # noqa: E402

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def too_large(send: Send) -> None:
    limit = settings.MAX_REQUEST_BYTES
    body = dumps(error_body("request_too_large", f"The request body is larger than {limit} bytes."))
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse bodies over MAX_REQUEST_BYTES without reading them whole."""
    limit = settings.MAX_REQUEST_BYTES
    declared = dict(scope.get("headers") or []).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        await too_large(send)
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
        await too_large(send)


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
