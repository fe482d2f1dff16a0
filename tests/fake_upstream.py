"""A fake OpenRouter: a real HTTP server on loopback that speaks the wire contract.

Tests queue scripted replies (`fake.queue(Reply(...))`); with none queued it answers like a healthy
upstream. Everything it receives is recorded in `fake.requests`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict (sent as JSON), bytes (sent raw) or None (ordinary completion)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    drop: bool = False  # close the connection without answering
    model: str | None = None  # the model the reply says answered
    content: str | None = None
    chunks: list[str] | None = None  # stream these deltas (when the request asks to stream)
    chunk_delay: float = 0.0
    stream_error_after: int | None = None  # send an error event after this many chunks
    stream_cut_after: int | None = None  # close the stream after this many chunks, no [DONE]
    endless: bool = False  # stream until the client goes away: a delta every chunk_delay seconds
    comments_only: bool = False  # with endless: only SSE comments (keep-alives), never a data event
    tool_calls: list[dict[str, str]] | None = None  # [{id, name, arguments}]: the model calls functions
    finish_reason: str | None = None  # "stop" (or "tool_calls" with tool_calls) unless set


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def chat_tool_calls(calls: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls
    ]


def completion_body(
    model: str,
    content: str | None,
    prompt_tokens: int = 12,
    completion_tokens: int = 7,
    *,
    tool_calls: list[dict[str, str]] | None = None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = chat_tool_calls(tool_calls)
    finish = finish_reason or ("tool_calls" if tool_calls else "stop")
    return {
        "id": "gen-fake-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "provider": "FakeProvider",
        "choices": [
            {"index": 0, "finish_reason": finish, "native_finish_reason": finish, "message": message}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


MODELS = [
    {
        "id": "fake/alpha",
        "canonical_slug": "fake/alpha",
        "name": "Fake Alpha",
        "created": 1700000000,
        "description": "A fake model.",
        "context_length": 8192,
        "pricing": {"prompt": "0", "completion": "0"},
    },
    {
        "id": "openai/gpt-4o-mini",
        "name": "OpenAI: GPT-4o-mini",
        "created": 1700000000,
        "description": "Small and fast.",
        "context_length": 128000,
    },
]


class _Server(ThreadingHTTPServer):
    # http.server's backlog is 5: a burst of hundreds of connections waited out SYN retransmissions
    # (1, 3, 7, 15 s) before the fake ever saw them
    request_queue_size = 1024


class FakeUpstream:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.model_replies: deque[Reply] = deque()
        self.requests: list[Received] = []
        self.disconnects = 0
        self.require_key: str | None = None
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = cast(tuple[str, int], self.server.server_address[:2])
        return f"http://{host}:{port}/api/v1"

    def start(self) -> FakeUpstream:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.replies.clear()
            self.model_replies.clear()
            self.requests.clear()
            self.disconnects = 0
            self.require_key = None

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def queue_models(self, *replies: Reply) -> None:
        with self._lock:
            self.model_replies.extend(replies)

    def completions(self) -> list[Received]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next(self, path: str) -> Reply:
        with self._lock:
            pending = self.model_replies if path.endswith("/models") else self.replies
            return pending.popleft() if pending else Reply()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, headers: dict[str, str], ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _record(self, body: Any) -> None:
                with fake._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    fake.requests.append(Received(self.command, self.path, headers, body))

            def do_GET(self) -> None:
                self._record(None)
                reply = fake._next(self.path)
                if self._scripted(reply):
                    return
                self._send(200, json.dumps({"data": MODELS}).encode(), reply.headers, "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                self._record(body)
                if fake.require_key and self.headers.get("Authorization") != f"Bearer {fake.require_key}":
                    self._send(
                        401,
                        json.dumps(error_body(401, "No auth credentials found")).encode(),
                        {},
                        "application/json",
                    )
                    return
                reply = fake._next(self.path)
                if self._scripted(reply):
                    return
                request = body if isinstance(body, dict) else {}
                model = reply.model or request.get("model") or "fake/default"
                messages = request.get("messages") or [{"content": ""}]
                content = (
                    reply.content
                    if reply.content is not None
                    else ""
                    if reply.tool_calls
                    else f"Fake reply to: {messages[-1].get('content')}"
                )
                if request.get("stream"):
                    self._stream(reply, model, content)
                    return
                body = completion_body(
                    model,
                    content or (None if reply.tool_calls else content),
                    tool_calls=reply.tool_calls,
                    finish_reason=reply.finish_reason,
                )
                self._send(200, json.dumps(body).encode(), reply.headers, "application/json")

            def _scripted(self, reply: Reply) -> bool:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return True
                if reply.body is None and reply.status == 200:
                    return False
                if isinstance(reply.body, bytes):
                    payload, ctype = reply.body, reply.headers.pop("Content-Type", "text/plain")
                else:
                    body = (
                        reply.body if reply.body is not None else error_body(reply.status, "scripted error")
                    )
                    payload, ctype = json.dumps(body).encode(), "application/json"
                self._send(reply.status, payload, reply.headers, ctype)
                return True

            def _event(self, data: str) -> None:
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

            def _stream(self, reply: Reply, model: str, content: str) -> None:
                chunks = (
                    reply.chunks
                    if reply.chunks is not None
                    else [content[:5], content[5:]]
                    if content
                    else []
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {
                    "id": "gen-fake-s",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "provider": "FakeProvider",
                }
                try:
                    self.wfile.write(b": OPENROUTER PROCESSING\n\n")
                    self.wfile.flush()
                    if reply.endless:
                        self._endless(reply, base)
                    for n, delta in enumerate(chunks):
                        if reply.stream_cut_after is not None and n == reply.stream_cut_after:
                            return
                        if reply.stream_error_after is not None and n == reply.stream_error_after:
                            error = {
                                **base,
                                "error": {"code": 502, "message": "provider failed"},
                                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
                            }
                            self._event(json.dumps(error))
                            return
                        if n and reply.chunk_delay:
                            time.sleep(reply.chunk_delay)
                        choice = {
                            "index": 0,
                            "delta": {"role": "assistant", "content": delta},
                            "finish_reason": None,
                        }
                        self._event(json.dumps({**base, "choices": [choice]}))
                    if reply.stream_cut_after is not None:
                        return
                    for n, call in enumerate(reply.tool_calls or []):
                        for call_chunk in self._tool_call_deltas(n, call):
                            self._event(json.dumps({**base, "choices": [call_chunk]}))
                    finish_reason = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
                    finish = {"index": 0, "delta": {"content": ""}, "finish_reason": finish_reason}
                    self._event(json.dumps({**base, "choices": [finish]}))
                    usage = {
                        "prompt_tokens": 12,
                        "completion_tokens": len(chunks),
                        "total_tokens": 12 + len(chunks),
                    }
                    self._event(json.dumps({**base, "choices": [], "usage": usage}))
                    self._event("[DONE]")
                except (BrokenPipeError, ConnectionResetError):
                    with fake._lock:
                        fake.disconnects += 1

            def _endless(self, reply: Reply, base: dict[str, Any]) -> None:
                """Never finishes: ends only with a BrokenPipeError when the client goes away."""
                n = 0
                while True:
                    time.sleep(reply.chunk_delay or 0.1)
                    if reply.comments_only:
                        self.wfile.write(b": OPENROUTER PROCESSING\n\n")
                        self.wfile.flush()
                    else:
                        choice = {"index": 0, "delta": {"content": f"t{n} "}, "finish_reason": None}
                        self._event(json.dumps({**base, "choices": [choice]}))
                    n += 1

            @staticmethod
            def _tool_call_deltas(index: int, call: dict[str, str]) -> list[dict[str, Any]]:
                """A function call as OpenAI streams it: id and name first, then the arguments in pieces."""
                first: dict[str, Any] = {"index": index, "id": call["id"], "type": "function"}
                first["function"] = {"name": call["name"], "arguments": ""}
                half = len(call["arguments"]) // 2
                pieces = [call["arguments"][:half], call["arguments"][half:]]
                deltas = [{"tool_calls": [first]}]
                deltas += [{"tool_calls": [{"index": index, "function": {"arguments": p}}]} for p in pieces]
                return [{"index": 0, "delta": d, "finish_reason": None} for d in deltas]

        return Handler
