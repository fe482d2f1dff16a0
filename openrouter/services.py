"""The upstream check behind POST /openrouter/test: one message, no memory."""

from __future__ import annotations

from django.conf import settings

import upstream
from gateway import calls, guards


async def test_upstream(
    *, message: str, model: str | None, api_key: str | None
) -> tuple[upstream.Completion, dict[str, int]]:
    """One message to the upstream, no memory: what did it say?"""
    model = model or settings.LLM_MODEL
    guards.check_model(model)
    key = guards.resolve_key(api_key)
    call = calls.upstream_call(
        [{"role": "user", "content": message}],
        model=model,
        max_tokens=settings.LLM_MAX_TOKENS,
        temperature=None,
        api_key=key,
    )
    return await calls.complete_and_record(call)
