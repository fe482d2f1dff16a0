"""The Responses API over any chat completions upstream: a response's context (its
`previous_response_id` chain or its conversation), the upstream call, and what is stored.

A stored response is a record (stores: Kind.RESPONSE) holding the response object, its own input and
output as stored messages (gateway.items) and the ids of the responses before it in its chain, newest
first, so that one read of the store gathers the whole chain. A response made with `conversation=`
also appends its turn to that conversation: the same conversations /chat keeps. Nothing is written
unless the upstream answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings

import upstream
from core import telemetry
from core.clock import utc_now_iso
from core.errors import ConversationNotFound, NotFound
from core.jsonio import dumps
from gateway import calls, guards, items
from gateway.turns import turn_id_for
from stores import Kind, get_store
from stores.base import Admission, CallRecord, RecordWrite, TurnWrite


class ResponseNotFound(NotFound):
    code = "response_not_found"

    def __init__(self, param: str | None = None) -> None:
        super().__init__("No stored response has that id.", param=param)


@dataclass(frozen=True)
class ResponseRequest:
    """What a client asked of POST /v1/responses, its input already as stored messages."""

    model: str
    input: list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation_id: str | None = None
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)  # function tools, in the Responses shape
    tool_choice: str | dict[str, Any] | None = None  # None: the upstream's own default (auto)
    parallel_tool_calls: bool | None = None
    text_format: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    reasoning_effort: str | None = None


@dataclass(frozen=True)
class PreparedResponse:
    request: ResponseRequest
    owner: str
    id: str
    created_at: int
    ancestors: list[str]  # the chain before this response, newest first
    call: upstream.UpstreamCall
    turn_id: str | None = None  # its turn in a conversation (see turns.turn_id_for)
    quota_key: str | None = None  # whose storage quota its turn and its record count against


def reads(request: ResponseRequest, owner: str, turn_id: str | None = None) -> dict[str, Any]:
    """What a response reads before its call, as guards.admit's `conversation`, `records` and `turn`
    (whether its turn in a conversation, `turn_id`, was stored already: its client retrying it)."""
    if request.previous_response_id:
        return {"records": (Kind.RESPONSE, [request.previous_response_id], owner)}
    if request.conversation_id:
        return {
            "conversation": (Kind.CHAT, request.conversation_id, owner),
            "turn": (owner, turn_id) if turn_id else None,
        }
    return {}


def turn_id_of(request: ResponseRequest, owner: str, request_id: str | None) -> str | None:
    """Its turn's id in its conversation (see turns.turn_id_for), from its input as sent: without the
    ids and times made for it here."""
    if not request.conversation_id:
        return None
    sent = [{k: v for k, v in m.items() if k not in ("id", "timestamp")} for m in request.input]
    message = orjson.dumps(sent).decode()
    return turn_id_for(
        request_id, kind=Kind.CHAT, owner=owner, conversation_id=request.conversation_id, message=message
    )


async def prepare(
    request: ResponseRequest,
    *,
    owner: str,
    api_key: str,
    admission: Admission,
    turn_id: str | None = None,
    quota_key: str | None = None,
) -> PreparedResponse:
    """Every check that can fail before the upstream is called (but the output cap's, made before
    admission held it), and the context to send. `admission` holds what guards.admit read for it (see
    reads)."""
    guards.check_model(request.model)
    history, ancestors = await _history(request, owner, admission)
    system = [{"role": "system", "content": request.instructions}] if request.instructions else []
    fixed = sum(items.estimate_tokens(m) for m in system)
    window = items.context_window(history, request.input, fixed_tokens=fixed)
    response_id = items.new_id("resp")
    if request.conversation_id:
        telemetry.note(conversation_id=request.conversation_id)
    return PreparedResponse(
        request=request,
        owner=owner,
        id=response_id,
        created_at=int(time.time()),
        ancestors=ancestors,
        turn_id=turn_id,
        quota_key=quota_key,
        call=upstream.UpstreamCall(
            messages=system + items.chat_messages(window + request.input),
            model=request.model,
            max_tokens=guards.requested_cap(request.max_output_tokens),  # always capped: what was held
            temperature=request.temperature,
            api_key=api_key,
            extra=_upstream_fields(request),
        ),
    )


async def _history(
    request: ResponseRequest, owner: str, admission: Admission
) -> tuple[list[dict[str, Any]], list[str]]:
    """The stored messages before this response, and its chain's ids (newest first)."""
    store = get_store()
    if request.previous_response_id:
        (previous,) = admission.records
        if previous is None:
            raise ResponseNotFound(param="previous_response_id")
        chain = [previous]
        for older in await store.get_records(Kind.RESPONSE, previous["ancestors"], owner=owner):
            if older is None:  # deleted or expired: the chain is sent from the response after it
                break
            chain.append(older)
        history = [message for record in reversed(chain) for message in record["items"]]
        # every response holds at least two messages (its input, its output): this many cover the cap
        links = max(1, settings.CONVERSATION_MAX_MESSAGES // 2)
        return history, [request.previous_response_id, *previous["ancestors"]][:links]
    if request.conversation_id:
        conversation = admission.conversation
        if conversation is None:
            raise ConversationNotFound(param="conversation")
        if not admission.turn_seen:  # a retried turn: its items are there already, and stored once
            items.check_new_ids(request.input, conversation.messages, param="input")
        return conversation.messages, []
    return [], []


def _upstream_fields(request: ResponseRequest) -> dict[str, Any]:
    """The chat completion fields beyond messages, model, max_tokens and temperature."""
    fields: dict[str, Any] = {}
    if request.top_p is not None:
        fields["top_p"] = request.top_p
    if request.tools:
        fields["tools"] = [_chat_tool(tool) for tool in request.tools]
        if request.tool_choice is not None:
            fields["tool_choice"] = _chat_tool_choice(request.tool_choice)
        if request.parallel_tool_calls is not None:
            fields["parallel_tool_calls"] = request.parallel_tool_calls
    if request.text_format and request.text_format.get("type") == "json_schema":
        schema = {k: v for k, v in request.text_format.items() if k != "type" and v is not None}
        fields["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif request.text_format and request.text_format.get("type") == "json_object":
        fields["response_format"] = {"type": "json_object"}
    if request.user:
        fields["user"] = request.user
    if request.reasoning_effort:
        fields["reasoning_effort"] = request.reasoning_effort
    if request.stream:
        fields["stream_options"] = {"include_usage": True}
    return fields


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {
        k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None
    }
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


# ---------------------------------------------------------------------------------------------------
# the answer


async def create(prepared: PreparedResponse) -> dict[str, Any]:
    """A non-streaming response: the upstream's answer as output items, stored, as a response object."""
    completion, usage = await calls.complete(prepared.call)
    first = completion.raw["choices"][0]  # upstream.parse_completion has made sure there is one
    tool_calls = items.as_dict(first.get("message")).get("tool_calls")
    output = reply_messages(completion.content, tool_calls, model=completion.model)
    status, incomplete = finish_status(completion.finish_reason)
    response = response_object(
        prepared,
        status=status,
        output=[items.item_of(m, status=_item_status(status)) for m in output],
        model=completion.model,
        usage=response_usage(usage, completion.raw.get("usage")),
        incomplete=incomplete,
    )
    await keep(prepared, output, response, call=calls.call_record(completion.model, usage=usage))
    return response


def reply_messages(text: str, tool_calls: Any, *, model: str) -> list[dict[str, Any]]:
    """The model's answer as stored messages: its text (unless it only called functions), then each
    function call."""
    now = utc_now_iso()
    calls_made = [c for c in tool_calls if isinstance(c, dict)] if isinstance(tool_calls, list) else []
    output = [items.reply(text, now=now, model=model)] if text or not calls_made else []
    for call in calls_made:
        function = items.as_dict(call.get("function"))
        arguments = function.get("arguments", "")
        output.append(
            items.function_call(
                call.get("id") or items.new_id("call"),
                str(function.get("name") or ""),
                arguments if isinstance(arguments, str) else dumps(arguments).decode(),
                now=now,
            )
        )
    return output


def finish_status(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """(status, incomplete_details) for the upstream's finish reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _item_status(status: str) -> str:
    return "incomplete" if status == "incomplete" else "completed"


def response_usage(counts: dict[str, int], raw: Any) -> dict[str, Any]:
    """The Responses API's usage from chat completion token counts (and their details, when sent)."""
    raw = raw if isinstance(raw, dict) else {}
    prompt = items.as_dict(raw.get("prompt_tokens_details"))
    completion = items.as_dict(raw.get("completion_tokens_details"))
    return {
        "input_tokens": counts.get("prompt_tokens", 0),
        "input_tokens_details": {
            "cached_tokens": _count(prompt.get("cached_tokens")),
            "cache_write_tokens": _count(prompt.get("cache_write_tokens")),
        },
        "output_tokens": counts.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": _count(completion.get("reasoning_tokens"))},
        "total_tokens": counts.get("total_tokens", 0),
    }


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and 0 <= value < upstream.MAX_TOKEN_COUNT else 0


def response_object(
    prepared: PreparedResponse,
    *,
    status: str,
    output: list[dict[str, Any]],
    model: str,
    usage: dict[str, Any] | None = None,
    incomplete: dict[str, str] | None = None,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The response object, as OpenAI's SDKs read it (`output_text` too, for plain HTTP clients)."""
    request = prepared.request
    return {
        "id": prepared.id,
        "object": "response",
        "created_at": prepared.created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": model,
        "output": output,
        "output_text": "".join(
            part["text"]
            for item in output
            if item["type"] == "message"
            for part in item["content"]
            if part["type"] == "output_text"
        ),
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "conversation": {"id": request.conversation_id} if request.conversation_id else None,
        "store": request.store,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "text": {"format": request.text_format or {"type": "text"}},
        "tool_choice": request.tool_choice or "auto",
        "tools": request.tools,
        "truncation": "disabled",
        "usage": usage,
        "user": request.user,
        "metadata": request.metadata,
    }


async def keep(
    prepared: PreparedResponse,
    output: list[dict[str, Any]],
    response: dict[str, Any],
    *,
    call: CallRecord | None = None,
) -> None:
    """Store what the upstream answered, in one write: the turn in its conversation, the response when
    `store`, and the call's statistics (`call`)."""
    request = prepared.request
    turn = request.input + output
    usage = response.get("usage") or {}
    await get_store().commit(
        turn=TurnWrite(
            Kind.CHAT,
            request.conversation_id,
            turn,
            owner=prepared.owner,
            model=response["model"],
            tokens=usage.get("total_tokens", 0),
            turn_id=prepared.turn_id,
            quota_key=prepared.quota_key,
        )
        if request.conversation_id
        else None,
        record=RecordWrite(
            Kind.RESPONSE,
            prepared.id,
            {
                "response": response,
                "items": turn,
                "inputs": len(request.input),
                "ancestors": prepared.ancestors,
            },
            owner=prepared.owner,
            quota_key=prepared.quota_key,
        )
        if request.store
        else None,
        call=call,
    )


# ---------------------------------------------------------------------------------------------------
# stored responses


async def _record(owner: str, response_id: str) -> dict[str, Any]:
    (record,) = await get_store().get_records(Kind.RESPONSE, [response_id], owner=owner)
    if record is None:
        raise ResponseNotFound()
    return record


async def retrieve(owner: str, response_id: str) -> dict[str, Any]:
    response: dict[str, Any] = (await _record(owner, response_id))["response"]
    return response


async def delete(owner: str, response_id: str) -> dict[str, Any]:
    if not await get_store().delete_record(Kind.RESPONSE, response_id, owner=owner):
        raise ResponseNotFound()
    return {"id": response_id, "object": "response.deleted", "deleted": True}


async def input_items(
    owner: str, response_id: str, *, after: str | None, limit: int, order: str
) -> dict[str, Any]:
    """The response's own input items (not those of the responses before it), one page."""
    record = await _record(owner, response_id)
    inputs = [items.item_of(m) for m in record["items"][: record["inputs"]]]
    return items.item_page(inputs, after=after, limit=limit, order=order)
