"""A fast fake OpenAI-compatible upstream for the benchmark: one asyncio (uvloop) process, aiohttp.

    python bench/fake_upstream.py --port 9100 [--host 127.0.0.1]

POST .../chat/completions answers at once: a JSON completion, or with `"stream": true` server-sent
events (one chunk per token, then a finish chunk, a usage chunk and `[DONE]`). Streams wait between
content chunks: FAKE_CHUNK_DELAY_MS (default 0), overridden per request by a model name holding
`delay-<ms>` (e.g. `bench/delay-50`); FAKE_STREAM_CHUNKS content chunks (default 10), or `chunks-<n>`
in the model name. GET .../models answers a small model list. Any path prefix works (the service
calls {LLM_BASE_URL}/chat/completions). Prints `ready <port>` once it listens; SIGTERM stops it.

The tests' fake (tests/fake_upstream.py) is threaded and scripted; this one has no scripting and no
recording, so that its own service time stays far below the service's under load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time
from typing import Any

import orjson
from aiohttp import web

DELAY_RE = re.compile(r"delay-(\d+)")
CHUNKS_RE = re.compile(r"chunks-(\d+)")
REPLY = "Hello! This is the benchmark's fake upstream answering."
MODELS = orjson.dumps(
    {
        "data": [
            {
                "id": "openai/gpt-4o-mini",
                "name": "OpenAI: GPT-4o-mini",
                "created": 1700000000,
                "description": "Fake.",
                "context_length": 128000,
            },
            {
                "id": "bench/delay-50",
                "name": "Bench stream with 50 ms between chunks",
                "created": 1700000000,
                "description": "Fake.",
                "context_length": 8192,
            },
        ]
    }
)
JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


DEFAULT_DELAY_MS = _env_int("FAKE_CHUNK_DELAY_MS", 0)
DEFAULT_CHUNKS = _env_int("FAKE_STREAM_CHUNKS", 10)


def completion(model: str, prompt_tokens: int) -> bytes:
    return orjson.dumps(
        {
            "id": "gen-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "provider": "BenchFake",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "native_finish_reason": "stop",
                    "message": {"role": "assistant", "content": REPLY},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 12,
                "total_tokens": prompt_tokens + 12,
            },
        }
    )


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def stream(request: web.Request, model: str, prompt_tokens: int) -> web.StreamResponse:
    delay_match = DELAY_RE.search(model)
    chunks_match = CHUNKS_RE.search(model)
    delay = (int(delay_match.group(1)) if delay_match else DEFAULT_DELAY_MS) / 1000.0
    chunks = int(chunks_match.group(1)) if chunks_match else DEFAULT_CHUNKS
    base = {
        "id": "gen-bench-s",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
    await response.prepare(request)
    for n in range(chunks):
        if n and delay:
            await asyncio.sleep(delay)
        choice = {"index": 0, "delta": {"role": "assistant", "content": f"tok{n} "}, "finish_reason": None}
        await response.write(event({**base, "choices": [choice]}))
    finish = {"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": chunks,
        "total_tokens": prompt_tokens + chunks,
    }
    await response.write(
        event({**base, "choices": [finish]})
        + event({**base, "choices": [], "usage": usage})
        + b"data: [DONE]\n\n"
    )
    await response.write_eof()
    return response


async def dispatch(request: web.Request) -> web.StreamResponse:
    path = request.path
    if request.method == "GET" and path.endswith("/models"):
        return web.Response(body=MODELS, headers=JSON_HEADERS)
    if request.method != "POST" or not path.endswith("/chat/completions"):
        return web.Response(
            status=404, body=b'{"error":{"code":404,"message":"not found"}}', headers=JSON_HEADERS
        )
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return web.Response(
            status=400, body=b'{"error":{"code":400,"message":"bad json"}}', headers=JSON_HEADERS
        )
    model = str(body.get("model") or "fake/default")
    messages = body.get("messages") or []
    prompt_tokens = sum(len(str(m.get("content") or "")) // 4 + 4 for m in messages if isinstance(m, dict))
    if body.get("stream"):
        return await stream(request, model, prompt_tokens)
    return web.Response(body=completion(model, prompt_tokens), headers=JSON_HEADERS)


async def serve(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname()[1] if sockets else port
    print(f"ready {bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
