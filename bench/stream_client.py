"""A lean load client for many open streams: raw asyncio sockets (uvloop), one process.

    python bench/stream_client.py --port 8000 --path /chat/message --streams 1000 --frames 40 \
        --body '{"message": "hi", "stream": true, "conversation_id": "c-{n}"}' --end 'event: done'

Opens `--streams` POSTs at once (`{n}` in the body is the stream's number), reads each answer as raw
bytes (no HTTP parsing beyond the status line: each frame is sent in its own write, so a frame ends
at every "\\n\\n"), and prints one JSON object: time to first byte and to each of the first `--frames`
frames, per stream, whether each ended with `--end`, and this process's own CPU seconds. Kept apart
from the bench runner so that its CPU is its own and can be reported (a Python client is itself a
limit at a thousand streams).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any


async def one(
    host: str, port: int, head: bytes, body: bytes, frames: int, end: bytes, start: asyncio.Event
) -> dict[str, Any]:
    await start.wait()
    began = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return {"error": f"connect: {exc}"}
    writer.write(head + body)
    first: float | None = None
    arrivals: list[float] = []
    tail = b""
    status = b""
    seen = 0
    ended = False
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            now = time.perf_counter()
            if first is None:
                first = now
                status = data[9:12]
            joined = tail + data
            count = joined.count(b"\n\n") - tail.count(b"\n\n")
            if count and len(arrivals) < frames:
                arrivals += [now] * min(count, frames - len(arrivals))
            seen += len(data)
            ended = ended or end in joined
            tail = joined[-64:]
    except OSError as exc:
        return {"error": f"read: {exc}"}
    finally:
        writer.close()
    if first is None:
        return {"error": "no answer"}
    return {
        "status": status.decode(errors="replace"),
        "ttfb": first - began,
        "frames": [a - began for a in arrivals],
        "complete": ended and len(arrivals) == frames,
        "bytes": seen,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    start = asyncio.Event()
    tasks = []
    headers = "".join(f"{h}\r\n" for h in args.header)
    for n in range(args.streams):
        body = args.body.replace("{n}", str(n)).encode()
        head = (
            f"POST {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{headers}"
            "Connection: close\r\n\r\n"
        ).encode()
        tasks.append(
            asyncio.create_task(one(args.host, args.port, head, body, args.frames, args.end.encode(), start))
        )
    await asyncio.sleep(0)
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    return {"wall": time.perf_counter() - began, "streams": results}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--end", default="\n\n")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(main_async(args))
    else:
        result = uvloop.run(main_async(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["pid"] = os.getpid()
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
