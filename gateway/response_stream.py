"""A streamed response: the upstream's chat completion chunks as the Responses API's event stream.

    response.created, response.in_progress,
    for each output item, in turn: response.output_item.added, then for text
      response.content_part.added, response.output_text.delta..., response.output_text.done,
      response.content_part.done; for a function call response.function_call_arguments.delta...,
      response.function_call_arguments.done; then response.output_item.done,
    response.completed (response.incomplete when cut short by max_output_tokens), after the turn is
    stored; or response.failed when the upstream or the store fails on the way.

Every event carries `type` and a `sequence_number` from 0. Each item is finished before the next one
starts, as OpenAI's own stream does, so the SDK's `responses.stream()` helper can follow it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import upstream
from core.clock import utc_now_iso
from core.errors import ServiceError
from gateway import calls, items, responses, sse

Event = dict[str, Any]


async def open_stream(prepared: responses.PreparedResponse) -> AsyncIterator[bytes]:
    """Open the upstream stream (a failure here gets its real HTTP status), then the event stream."""
    stream = await calls.open_and_record(prepared.call)
    return _frames(prepared, stream)


async def _frames(
    prepared: responses.PreparedResponse, stream: upstream.UpstreamStream
) -> AsyncIterator[bytes]:
    sequence = 0

    def framed(event: Event) -> bytes:
        nonlocal sequence
        event["sequence_number"] = sequence
        sequence += 1
        return sse.frame(event["type"], event)

    output = _Output(stream.model)
    started = responses.response_object(
        prepared, status="in_progress", output=[], model=prepared.request.model
    )
    try:
        # From the first event on: a client gone at any yield closes the upstream stream at once.
        async with calls.relaying(stream, counted=False):
            yield framed({"type": "response.created", "response": started})
            yield framed({"type": "response.in_progress", "response": started})
            async for chunk in stream.chunks():
                for event in output.take(chunk):
                    yield framed(event)
        closing = output.finish()
        # Stored (with the call's statistics and budget charges) before the last events go out, and
        # to the end even if the client goes away meanwhile: the upstream has been paid.
        final = await asyncio.shield(_finish(prepared, stream, output))
        for event in closing:
            yield framed(event)
    except ServiceError as exc:  # the upstream failed mid-reply, or the store did at the end
        failed = responses.response_object(
            prepared,
            status="failed",
            output=output.items(),
            model=stream.model,
            error={"code": "server_error", "message": exc.message},
        )
        yield framed({"type": "response.failed", "response": failed})
        return
    kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
    yield framed({"type": kind, "response": final})


async def _finish(
    prepared: responses.PreparedResponse, stream: upstream.UpstreamStream, output: _Output
) -> dict[str, Any]:
    """The final response object, once its turn is stored."""
    status, incomplete = responses.finish_status(stream.finish_reason)
    usage = calls.full_usage(stream.usage)
    final = responses.response_object(
        prepared,
        status=status,
        output=output.items(status),
        model=stream.model,
        usage=responses.response_usage(usage, None),
        incomplete=incomplete,
    )
    # the call's statistics are stored with the response: one write
    await responses.keep(prepared, output.stored, final, call=calls.call_record(stream.model, usage=usage))
    return final


class _Output:
    """The output items of a streamed response, built chunk by chunk, with the events that tell of
    each step. One item is open at a time: text, or one function call."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.stored: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the stored message being written
        self._open_call: Any = None  # the upstream's index of the function call being written

    def items(self, status: str = "completed") -> list[dict[str, Any]]:
        done = "incomplete" if status == "incomplete" else "completed"
        return [items.item_of(m, status=done) for m in self.stored]

    def take(self, chunk: dict[str, Any]) -> list[Event]:
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        delta = items.as_dict(choice.get("delta"))
        events: list[Event] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            events += self._text(text)
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                events += self._call(call)
        return events

    def _where(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open["id"], "output_index": len(self.stored) - 1}

    def _open_text(self) -> list[Event]:
        events = self.close()
        self._start(items.reply("", now=utc_now_iso(), model=self.model))
        opened = {**items.item_of(self._open or {}, status="in_progress"), "content": []}
        part = items.output_text("")
        return [
            *events,
            self._added(opened),
            {"type": "response.content_part.added", **self._where(), "content_index": 0, "part": part},
        ]

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or items.kind_of(self._open) != "message":
            events += self._open_text()
        assert self._open is not None
        self._open["content"] += text
        events.append(
            {
                "type": "response.output_text.delta",
                **self._where(),
                "content_index": 0,
                "delta": text,
                "logprobs": [],
            }
        )
        return events

    def _call(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        function = items.as_dict(call.get("function"))
        index = call.get("index", call.get("id"))
        if self._open is None or items.kind_of(self._open) != items.FUNCTION_CALL or index != self._open_call:
            events += self.close()
            call_id = call.get("id") or items.new_id("call")
            self._start(items.function_call(call_id, str(function.get("name") or ""), "", now=utc_now_iso()))
            self._open_call = index
            events.append(self._added(items.item_of(self._open or {}, status="in_progress")))
        assert self._open is not None
        if function.get("name") and not self._open["name"]:
            self._open["name"] = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._open["arguments"] += arguments
            events.append(
                {"type": "response.function_call_arguments.delta", **self._where(), "delta": arguments}
            )
        return events

    def _start(self, message: dict[str, Any]) -> None:
        self._open = message
        self.stored.append(message)

    def _added(self, item: dict[str, Any]) -> Event:
        return {"type": "response.output_item.added", "output_index": len(self.stored) - 1, "item": item}

    def finish(self) -> list[Event]:
        """Close the last item; a reply with neither text nor a call is one empty message, as without
        streaming."""
        return self.close() if self.stored else [*self._open_text(), *self.close()]

    def close(self) -> list[Event]:
        """Finish the open item, if any: its closing events."""
        if self._open is None:
            return []
        where, message = self._where(), self._open
        self._open, self._open_call = None, None
        item = items.item_of(message)
        done = {"type": "response.output_item.done", "output_index": where["output_index"], "item": item}
        if items.kind_of(message) == items.FUNCTION_CALL:
            arguments = {
                "type": "response.function_call_arguments.done",
                **where,
                "arguments": message["arguments"],
                "name": message["name"],
            }
            return [arguments, done]
        text = message["content"]
        return [
            {"type": "response.output_text.done", **where, "content_index": 0, "text": text, "logprobs": []},
            {
                "type": "response.content_part.done",
                **where,
                "content_index": 0,
                "part": items.output_text(text),
            },
            done,
        ]
