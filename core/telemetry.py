"""Request ids, the per-request context that log records and the access line carry, and log formats."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# One mutable dict per request: set by the ASGI entry point, filled in by whatever handles the
# request (route, conversation, model, tokens, upstream latency, retries), read by the access line.
request_context: ContextVar[dict[str, Any] | None] = ContextVar("request_context", default=None)


def request_id_for(incoming: str | None) -> str:
    """Keep a caller's X-Request-ID when it is a safe token, else make one."""
    if incoming and SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def current() -> dict[str, Any]:
    return request_context.get() or {}


def current_request_id() -> str | None:
    return current().get("request_id")


def note(**fields: Any) -> None:
    """Add facts about this request to its access line."""
    context = request_context.get()
    if context is not None:
        context.update(fields)


def add_to(field: str, amount: float = 1) -> None:
    context = request_context.get()
    if context is not None:
        context[field] = context.get(field, 0) + amount


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a log line says: the basics, the request id, and any structured extras."""
    fields: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
        "request_id": getattr(record, "request_id", None),
    }
    fields.update(getattr(record, "fields", None) or {})
    if record.exc_text:
        fields["exception"] = record.exc_text
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(record_fields(record), default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [rid={request_id}]" if request_id else line
