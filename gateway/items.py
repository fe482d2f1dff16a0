"""Items: the one stored-message format of every conversation, read and written as OpenAI's items
(Responses and Conversations APIs) and sent upstream as chat completion messages.

A stored message is what /chat has always kept (`role`, text `content`, `timestamp`, `model` on
replies) plus an `id`; a function call and its output are messages of their own, with a `type`:

    {"id": "msg_…", "role": "user" | "assistant" | "system" | "developer", "content": "…", "timestamp": "…"}
    {"id": "fc_…", "type": "function_call", "role": "assistant", "content": "",
     "call_id": "call_…", "name": "…", "arguments": "{…}", "timestamp": "…"}
    {"id": "fco_…", "type": "function_call_output", "role": "tool", "content": "<output>",
     "call_id": "call_…", "timestamp": "…"}

So a conversation started on the chat page can be continued through the Responses API and the other
way round: /chat reads the text messages and leaves function calls out of its context.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings

from core.errors import BadRequest
from stores.base import is_reply, stored_id

FUNCTION_CALL = "function_call"
FUNCTION_CALL_OUTPUT = "function_call_output"
TEXT_PARTS = ("input_text", "output_text", "text")
ROLES = ("user", "assistant", "system", "developer")


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON object read from the upstream, or an empty one when it sent something else."""
    return value if isinstance(value, dict) else {}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def kind_of(message: dict[str, Any]) -> str:
    return str(message.get("type") or "message")


# ---------------------------------------------------------------------------------------------------
# OpenAI input items in


class Unsupported(BadRequest):
    code = "unsupported_value"


def _checked_text(text: str, param: str) -> str:
    if len(text) > settings.MESSAGE_MAX_CHARS:
        raise BadRequest(
            f"{param} may be at most {settings.MESSAGE_MAX_CHARS} characters long.",
            code="string_above_max_length",
            param=param,
        )
    return text


def _text_of(content: str | list[dict[str, Any]], param: str) -> str:
    """The text of a content string or of content parts (text only)."""
    if isinstance(content, str):
        return _checked_text(content, param)
    texts = []
    for n, part in enumerate(content):
        kind = part.get("type")
        if kind in TEXT_PARTS:
            texts.append(part.get("text") or "")
        elif kind == "refusal":
            texts.append(part.get("refusal") or "")
        else:
            raise Unsupported(
                f"Content of type {kind} is not supported here: only text.", param=f"{param}[{n}].type"
            )
    return _checked_text("\n".join(texts), param)


def stored_from_input(items: list[dict[str, Any]], *, now: str, param: str = "input") -> list[dict[str, Any]]:
    """Input items (messages with text, function calls, function call outputs) as stored messages;
    any other item is refused with 400, naming its place."""
    stored = []
    for n, item in enumerate(items):
        at = f"{param}[{n}]"
        kind = kind_of(item)
        own_id = item.get("id") if isinstance(item.get("id"), str) and item.get("id") else None
        if kind == "message" and item.get("role") in ROLES:
            stored.append(
                {
                    "id": own_id or new_id("msg"),
                    "role": item["role"],
                    "content": _text_of(item.get("content") or "", f"{at}.content"),
                    "timestamp": now,
                }
            )
        elif kind == FUNCTION_CALL:
            stored.append(
                function_call(item["call_id"], item["name"], item["arguments"], now=now, item_id=own_id)
            )
            _checked_text(item["arguments"], f"{at}.arguments")
        elif kind == FUNCTION_CALL_OUTPUT:
            stored.append(
                {
                    "id": own_id or new_id("fco"),
                    "type": FUNCTION_CALL_OUTPUT,
                    "role": "tool",
                    "content": _text_of(item.get("output") or "", f"{at}.output"),
                    "call_id": item["call_id"],
                    "timestamp": now,
                }
            )
        else:
            raise Unsupported(
                f"Input items of type {kind} are not supported here: only messages, function calls "
                "and function call outputs.",
                param=f"{at}.type",
            )
    check_new_ids(stored, [], param=param)
    return stored


def check_new_ids(stored: list[dict[str, Any]], existing: list[dict[str, Any]], *, param: str) -> None:
    """Each item's id once: in the request, and not already among `existing` (its conversation's), as
    OpenAI refuses a repeated one. A conversation holding an id twice made a list of its items resume
    `after` it at its first copy, for ever."""
    taken = {stored_id(m) for m in existing}
    for n, message in enumerate(stored):
        if message["id"] in taken:
            raise BadRequest(
                f"Duplicate item found with id {message['id']}. Remove duplicate items from your input "
                "and try again.",
                code="duplicate_item",
                param=f"{param}[{n}].id",
            )
        taken.add(message["id"])


def function_call(
    call_id: str, name: str, arguments: str, *, now: str, item_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": item_id or new_id("fc"),
        "type": FUNCTION_CALL,
        "role": "assistant",
        "content": "",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "timestamp": now,
    }


def reply(text: str, *, now: str, model: str, item_id: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id or new_id("msg"),
        "role": "assistant",
        "content": text,
        "timestamp": now,
        "model": model,
    }


# ---------------------------------------------------------------------------------------------------
# OpenAI items out


def item_of(message: dict[str, Any], *, status: str = "completed") -> dict[str, Any]:
    """A stored message as an OpenAI item (a conversation item, a response's input or output item)."""
    kind = kind_of(message)
    if kind == FUNCTION_CALL:
        return {
            "id": stored_id(message),
            "type": FUNCTION_CALL,
            "call_id": message["call_id"],
            "name": message["name"],
            "arguments": message["arguments"],
            "status": status,
        }
    if kind == FUNCTION_CALL_OUTPUT:
        return {
            "id": stored_id(message),
            "type": FUNCTION_CALL_OUTPUT,
            "call_id": message["call_id"],
            "output": message["content"],
            "status": status,
        }
    if message["role"] == "assistant":
        part = output_text(message["content"])
    else:
        part = {"type": "input_text", "text": message["content"]}
    return {
        "id": stored_id(message),
        "type": "message",
        "role": message["role"],
        "content": [part],
        "status": status,
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def item_page(items: list[dict[str, Any]], *, after: str | None, limit: int, order: str) -> dict[str, Any]:
    """One page of an item list in OpenAI's cursor shape: `after` is the last id of the page before."""
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after:
        ids = [item["id"] for item in ordered]
        start = ids.index(after) + 1 if after in ids else len(ordered)
    page = ordered[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(ordered),
    }


# ---------------------------------------------------------------------------------------------------
# chat completion messages, for the upstream


def chat_messages(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored messages as chat completion messages: function calls join the assistant message before
    them (one message with `tool_calls`), outputs become `tool` messages, `developer` is `system`."""
    messages: list[dict[str, Any]] = []
    for message in stored:
        kind = kind_of(message)
        if kind == FUNCTION_CALL:
            call = {
                "id": message["call_id"],
                "type": "function",
                "function": {"name": message["name"], "arguments": message["arguments"]},
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == FUNCTION_CALL_OUTPUT:
            messages.append(
                {"role": "tool", "tool_call_id": message["call_id"], "content": message["content"]}
            )
        else:
            role = "system" if message["role"] == "developer" else message["role"]
            messages.append({"role": role, "content": message["content"]})
    return messages


def estimate_tokens(message: dict[str, Any]) -> int:
    """Roughly four characters a token, as /chat estimates."""
    size = (
        len(message.get("content") or "")
        + len(message.get("arguments") or "")
        + len(message.get("name") or "")
    )
    return size // 4 + 4


def turn_start(window: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The window from its first message that starts a turn (never a reply or a function's output)."""
    start = 0
    while start < len(window) and is_reply(window[start]):
        start += 1
    return window[start:]


def context_window(
    history: list[dict[str, Any]], new: list[dict[str, Any]], *, fixed_tokens: int = 0
) -> list[dict[str, Any]]:
    """The stored history sent with `new`: at most CONVERSATION_MAX_MESSAGES messages, whole turns, and
    with CHAT_CONTEXT_TOKENS set, the oldest turns left out until the estimate fits."""
    window = turn_start(history[-settings.CONVERSATION_MAX_MESSAGES :])
    budget = settings.CHAT_CONTEXT_TOKENS
    if budget:
        needed = fixed_tokens + sum(estimate_tokens(m) for m in new)
        total = sum(estimate_tokens(m) for m in window)
        while window and needed + total > budget:
            kept = turn_start(window[1:])
            total -= sum(estimate_tokens(m) for m in window[: len(window) - len(kept)])
            window = kept
    return window
