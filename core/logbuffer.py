"""A bounded ring buffer of this process's own log records, served by /api/hf/logs.

Served to anyone but an admin, a record carries no client address, owner, key name or conversation id:
those fields are dropped, their values masked wherever the message repeats them, any IP address in
the text masked, and an access line shows its route (`/chat/conversations/{conversation_id}`) instead
of its path. The process's own stdout keeps everything for the operator.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from typing import Any

from core.auth import ANONYMOUS
from core.telemetry import PRIVATE_FIELDS, record_fields

BUFFER_SIZE = 1000
HIDDEN = "[hidden]"
_records: deque[dict[str, Any]] = deque(maxlen=BUFFER_SIZE)
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|\b(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\b")


class RingBufferHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        private = [str(v) for v in getattr(record, "private", ()) if v]
        _records.append({**record_fields(record), "levelno": record.levelno, "private": private})


def _public(record: dict[str, Any]) -> dict[str, Any]:
    # an error's traceback (the code's paths and lines, values in them) is the operator's alone
    shown = {k: v for k, v in record.items() if k not in PRIVATE_FIELDS and k != "exception"}
    found = {*record["private"], *(str(record[k]) for k in PRIVATE_FIELDS if record.get(k))}
    values = sorted(found - {ANONYMOUS}, key=len)
    message = str(shown.get("message", ""))
    if record.get("route") and record.get("path"):
        shown["path"] = record["route"]
        message = message.replace(str(record["path"]), str(record["route"]), 1)
    for value in reversed(values):  # longest first, so a value inside another is not left half-shown
        message = message.replace(value, HIDDEN)
    shown["message"] = _ADDRESS.sub(HIDDEN, message)
    return shown


def recent(*, limit: int, min_level: int, private: bool) -> list[dict[str, Any]]:
    """The newest `limit` records at or above `min_level`, oldest first; without `private`, scrubbed."""
    matching = [r for r in _records if r["levelno"] >= min_level]
    chosen = matching[max(0, len(matching) - limit) :]
    shown = chosen if private else [_public(r) for r in chosen]
    return [{k: v for k, v in r.items() if k not in ("levelno", "private", "route")} for r in shown]
