"""Keeps secrets out of every log record: stdout, /api/hf/logs and any other handler alike."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.conf import settings

from core import keys, telemetry

MASK = "[redacted]"
PATTERNS = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)(x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(?i)(x-client-token[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(?i)([\"']?api_key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"()\bsk-[A-Za-z0-9_-]{16,}"),
]


def redact(text: str) -> str:
    for secret in (settings.LLM_API_KEY, *keys.access_keys(), *keys.admin_keys()):
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


class RedactingFilter(logging.Filter):
    """Set on every handler in LOGGING: whichever logger made a record, the text that leaves the process
    (stdout, /api/hf/logs) has secrets masked, tracebacks included, and carries the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redacted", False):  # a record goes through each handler's filter
            return True
        record.request_id = telemetry.current_request_id()
        record.private = telemetry.private_values()
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not take logging down
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        record.redacted = True
        return True
