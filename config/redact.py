"""Keeps secrets out of every log record: stdout, /api/hf/logs and any other handler alike."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.conf import settings

from config import telemetry

MASK = "[redacted]"
PATTERNS = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)(x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(?i)([\"']?api_key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"()\bsk-[A-Za-z0-9_-]{16,}"),
]


def redact(text: str) -> str:
    for secret in (settings.LLM_API_KEY, *settings.BACKEND_API_KEYS):
        if secret:
            text = text.replace(secret, MASK)
    for pattern in PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return text


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean(value: Any) -> Any:
    """A value fit for a log line: secrets masked, control characters (forged line breaks) escaped."""
    if not isinstance(value, str):
        return value
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", redact(value))


def _redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _make_record(*args, **kwargs)
    record.request_id = telemetry.current_request_id()
    try:
        message = record.getMessage()
    except Exception:  # a bad format string must not take logging down
        message = str(record.msg)
    record.msg, record.args = redact(message), None
    if record.exc_info:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    return record


_make_record = logging.getLogRecordFactory()


def install() -> None:
    """Redact every log record as it is made, whichever logger made it and whichever handler gets it."""
    if logging.getLogRecordFactory() is not _redacted_record:
        logging.setLogRecordFactory(_redacted_record)
