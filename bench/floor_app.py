"""The bare floor for open streams: Django's StreamingHttpResponse under uvicorn, forwarding nothing.

    uvicorn --app-dir bench floor_app:application --port 9200 --no-access-log

POST /stream answers `text/event-stream`: FLOOR_CHUNKS (40) `delta` frames FLOOR_DELAY_MS (50) apart,
then one `done` frame, produced here with no upstream, no store and no middleware. What the gateway
spends per chunk and per open stream beyond this is the cost of its own streaming path.

POST /relay is the least a relay built on the gateway's libraries spends: the request body goes to
FLOOR_UPSTREAM (an OpenAI-compatible base URL) with aiohttp (the library under the gateway's httpx
transport; connections pooled and kept 60 s, as the gateway keeps them), and the upstream's bytes come
back through the same StreamingHttpResponse as they arrive, unparsed: no SSE parsing, no JSON, no
framing, no store, no checks.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp
import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import path

CHUNKS = int(os.environ.get("FLOOR_CHUNKS", "40"))
DELAY = int(os.environ.get("FLOOR_DELAY_MS", "50")) / 1000.0

settings.configure(
    DEBUG=False,
    SECRET_KEY="floor",  # a benchmark app: nothing is signed
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
)
django.setup(set_prefix=False)


async def frames() -> AsyncIterator[bytes]:
    for n in range(CHUNKS):
        if n:
            await asyncio.sleep(DELAY)
        yield b'event: delta\ndata: {"delta": "tok%d "}\n\n' % n
    yield b'event: done\ndata: {"status": "success"}\n\n'


async def stream(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "")
_session: aiohttp.ClientSession | None = None


async def relayed(body: bytes) -> AsyncIterator[bytes]:
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60))
    async with _session.post(
        f"{UPSTREAM}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    ) as upstream:
        async for data in upstream.content.iter_any():
            yield data


async def relay(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(relayed(request.body), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


async def health(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"ok"]))


urlpatterns = [path("stream", stream), path("relay", relay), path("health", health)]
application = get_asgi_application()
