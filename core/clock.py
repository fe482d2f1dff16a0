from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


_STARTED = time.monotonic()


def uptime_seconds() -> float:
    """Seconds since this process loaded its code, to a tenth."""
    return round(time.monotonic() - _STARTED, 1)
