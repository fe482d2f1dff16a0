"""A bounded ring buffer of this process's own log records, served by /api/hf/logs."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from core.telemetry import record_fields

BUFFER_SIZE = 1000
_records: deque[dict[str, Any]] = deque(maxlen=BUFFER_SIZE)


class RingBufferHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _records.append({**record_fields(record), "levelno": record.levelno})


def recent(*, limit: int, min_level: int) -> list[dict[str, Any]]:
    """The newest `limit` records at or above `min_level`, oldest first."""
    matching = [r for r in _records if r["levelno"] >= min_level]
    return [{k: v for k, v in r.items() if k != "levelno"} for r in matching[max(0, len(matching) - limit) :]]
