"""Whether this process can serve: the store answers, and an upstream key is set where one is needed."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

import upstream
from core.errors import ServiceError
from stores import get_store


@dataclass(frozen=True)
class Readiness:
    ready: bool
    message: str
    api_available: bool
    store: str


async def readiness() -> Readiness:
    store = get_store()
    api_available = bool(settings.LLM_API_KEY) or not upstream.key_required()
    try:
        await store.ping()
    except ServiceError:
        return Readiness(False, "The conversation store is not answering.", api_available, store.kind_name)
    return Readiness(True, "Ready to serve.", api_available, store.kind_name)
