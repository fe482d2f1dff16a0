"""orjson for every JSON body the service reads or writes."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest
from ninja.parser import Parser
from ninja.renderers import BaseRenderer
from pydantic import BaseModel


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def dumps_to_keep(value: Any) -> bytes:
    """`value`'s JSON, for bytes kept past the moment (a stored record, a request body held while its
    call lasts): orjson (3.12 on) leaves its output in the buffer it grew, never trimmed, at least
    4 KiB and often ten times the JSON's length. A copy holds just the JSON."""
    return bytes(memoryview(orjson.dumps(value)))


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> bytes:
        return dumps(data)


class NotJSON(ValueError):
    """A request body sent without a JSON content type."""


def declares_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


class BodyRefused(ValueError):
    """A JSON body this service does not take (400, saying why)."""


# Levels of nesting kept free below orjson's limit (255) for those the service wraps a body's parts in
# (a /v1/responses tool's parameters go one level deeper upstream): past it, orjson could not write
# the upstream request (a 500).
DEPTH_HEADROOM = 8


class ORJSONParser(Parser):
    def parse_body(self, request: HttpRequest) -> Any:
        # Every body must say it is JSON: a browser sends text/plain, form and multipart bodies
        # cross-site without asking first (no CORS preflight), never JSON. Ninja calls this only for
        # an operation that takes a body, after authentication, and never for an empty body.
        if not declares_json(request.content_type or ""):
            raise NotJSON(request.content_type)
        data = orjson.loads(request.body)
        if not isinstance(data, dict):  # a string, a list, null: read as "no fields" they were sent upstream
            raise BodyRefused("The request body must be a JSON object.")
        # JSON may escape lone surrogates (\ud800) that no UTF-8 text can hold: refuse them here,
        # once, rather than fail later when the text is written out again.
        wrapped: Any = data
        for _ in range(DEPTH_HEADROOM):
            wrapped = [wrapped]
        try:
            orjson.dumps(wrapped)
        except orjson.JSONEncodeError as exc:
            if "recursion" in str(exc).lower():
                raise BodyRefused(
                    f"The request body is nested too deeply (at most {254 - DEPTH_HEADROOM} levels)."
                ) from exc
            raise
        return data
