"""What a request opened that must not outlive it: closed when the request ends, however it ends.

An upstream stream is closed by whoever relays it (gateway.calls.Relay). But a client can go away
after the stream was opened and before its answer's first byte (while the head is on its way, or in a
middleware after the view): nothing then ever iterates the frames, so nothing closes the stream but
the garbage collector, and the provider keeps generating tokens the owner pays for. The edge
(config/edge.py) gives every request a list here and runs what is in it once Django is done."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

logger = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]

# Set by the edge for each request to a list of its own; the view's task (a copy of the edge's
# context) appends to that same list.
opened: ContextVar[list[Closer] | None] = ContextVar("opened", default=None)


def close_at_end(closer: Closer) -> None:
    """Run `closer` when the request ends (it must do nothing when what it closes is already closed).
    Outside a request served by the edge (Django's test client), nothing is registered."""
    pending = opened.get()
    if pending is not None:
        pending.append(closer)


async def close_all(pending: list[Closer]) -> None:
    """Every closer, each one even if another fails or the task is cancelled meanwhile (a failure is
    logged by its kind only: what it says may name the provider's URL; a cancellation is raised once
    all have run)."""
    cancelled: asyncio.CancelledError | None = None
    for closer in pending:
        try:
            await closer()
        except asyncio.CancelledError as exc:
            cancelled = exc
        except Exception as exc:
            logger.warning("closing what a request left open failed: %s", type(exc).__name__)
    pending.clear()
    if cancelled is not None:
        raise cancelled
