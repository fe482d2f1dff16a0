"""The project's one error shape and the domain error every layer raises."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from ninja import Schema

from core import telemetry
from core.clock import utc_now_iso
from core.jsonio import dumps


class ServiceError(Exception):
    """An error with an HTTP status, a machine word and one sentence for people."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        permanent: bool = True,
        param: str | None = None,
        provider_error: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.permanent = permanent
        self.param = param  # the request field at fault, for OpenAI's error shape
        # The model provider's own error (message, type, code, param; secrets already masked), which
        # /v1/ answers with as it is so that SDKs raise the class they would against the provider.
        self.provider_error = provider_error


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class ConversationNotFound(NotFound):
    code = "conversation_not_found"

    def __init__(self, param: str | None = None) -> None:
        super().__init__("Conversation not found", param=param)


class BadRequest(ServiceError):
    status = 400
    code = "bad_request"


class StoreUnavailable(ServiceError):
    status = 503
    code = "store_unavailable"

    def __init__(self) -> None:
        super().__init__("The conversation store is not answering; try again shortly.")


class StoreOutcomeUnknown(StoreUnavailable):
    """A write was sent and the store stopped answering: it may have been applied, or not."""

    def __init__(self) -> None:
        ServiceError.__init__(
            self,
            "The conversation store stopped answering while saving this request's turn: it may have been "
            "stored. Sending it again with the same X-Request-ID will not store it twice.",
        )


class FieldError(Schema):
    field: str
    reason: str


class ErrorOut(Schema):
    status: str = "error"
    code: str
    message: str
    timestamp: str
    request_id: str | None = None
    errors: list[FieldError] | None = None


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "error",
        "code": code,
        "message": message,
        "timestamp": utc_now_iso(),
        "request_id": telemetry.current_request_id(),
    }
    body.update(extra)
    return body


ERROR_STATUSES = (400, 401, 402, 403, 404, 413, 415, 422, 429, 502, 503, 504)
ERRORS: dict[int, type[Schema]] = dict.fromkeys(ERROR_STATUSES, ErrorOut)
"""Every error an operation that calls the upstream may answer, for `response={200: Out, **ERRORS}`."""


class OpenAIError(Schema):
    message: str
    type: str
    code: str | None
    param: str | None = None


class OpenAIErrorOut(Schema):
    error: OpenAIError


OPENAI_ERRORS: dict[int, type[Schema]] = dict.fromkeys(ERROR_STATUSES, OpenAIErrorOut)

OPENAI_PREFIX = "/v1/"
_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def openai_error_body(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    provider_error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """OpenAI's error shape, so the SDKs raise the right exception class; the provider's own fields
    (when it sent them) take the place of ours."""
    kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    error = {"message": message, "type": kind, "code": code, "param": param}
    for name, value in (provider_error or {}).items():
        if value is not None and name in error:
            error[name] = value
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    path: str = "",
    param: str | None = None,
    provider_error: dict[str, Any] | None = None,
    **extra: Any,
) -> HttpResponse:
    """The error answer: the project's shape, or OpenAI's under /v1/."""
    if path.startswith(OPENAI_PREFIX):
        details = "; ".join(f"{e['field']}: {e['reason']}" for e in extra.get("errors") or [])
        body = openai_error_body(
            status,
            code,
            f"{message} {details}".strip() if details else message,
            param=param,
            provider_error=provider_error,
        )
    else:
        body = error_body(code, message, **extra)
    response = HttpResponse(dumps(body), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response
