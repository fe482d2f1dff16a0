"""/v1/responses/*: OpenAI's Responses API over any chat completions upstream, with the responses
kept in the conversation store (gateway.responses)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router
from ninja.responses import Status

from core.auth import caller_of, owner_for_writing
from core.clock import utc_now_iso
from core.errors import OPENAI_ERRORS, BadRequest, OpenAIErrorOut
from gateway import guards, items, response_stream, responses, sse
from v1.response_schemas import (
    BuiltInToolIn,
    ConversationRefIn,
    ItemListOut,
    ItemsQuery,
    ResponseCreateIn,
    ResponseDeletedOut,
    ResponseOut,
    ToolChoiceFunctionIn,
    ToolChoiceOtherIn,
)

router = Router(tags=["responses"])

NOT_FOUND = {404: OpenAIErrorOut}


def response_request(payload: ResponseCreateIn) -> responses.ResponseRequest:
    """The request as the service takes it: input as stored messages, built-in tools refused."""
    for n, tool in enumerate(payload.tools or []):
        if isinstance(tool, BuiltInToolIn):
            raise BadRequest(
                f"Built-in tools ({tool.type}) are not supported by this gateway: only function tools.",
                code="unsupported_value",
                param=f"tools[{n}].type",
            )
    choice = payload.tool_choice
    if isinstance(choice, ToolChoiceOtherIn):
        raise BadRequest(
            f"tool_choice of type {choice.type} is not supported: none, auto, required or a function.",
            code="unsupported_value",
            param="tool_choice",
        )
    given = [{"role": "user", "content": payload.input}] if isinstance(payload.input, str) else payload.input
    conversation = payload.conversation
    text_format = payload.text.format if payload.text else None
    return responses.ResponseRequest(
        model=payload.model or settings.LLM_MODEL,
        input=items.stored_from_input(
            [i if isinstance(i, dict) else i.model_dump(exclude_none=True) for i in given], now=utc_now_iso()
        ),
        instructions=payload.instructions,
        previous_response_id=payload.previous_response_id,
        conversation_id=conversation.id if isinstance(conversation, ConversationRefIn) else conversation,
        store=payload.store is not False,
        stream=bool(payload.stream),
        max_output_tokens=payload.max_output_tokens,
        temperature=payload.temperature,
        top_p=payload.top_p,
        tools=[t.model_dump(exclude_none=True) for t in payload.tools or []],
        tool_choice=choice.model_dump() if isinstance(choice, ToolChoiceFunctionIn) else choice,
        parallel_tool_calls=payload.parallel_tool_calls,
        text_format=text_format.model_dump(by_alias=True, exclude_none=True) if text_format else None,
        metadata=payload.metadata or {},
        user=payload.user,
        reasoning_effort=payload.reasoning.effort if payload.reasoning else None,
    )


@router.post(
    "",
    response={200: ResponseOut, **OPENAI_ERRORS},
    summary="Create a model response (OpenAI's Responses API)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "example": {"model": "openai/gpt-4o-mini", "input": "Tell me a three-sentence story."}
                }
            }
        }
    },
)
async def create_response(
    request: HttpRequest, payload: ResponseCreateIn
) -> Status[dict[str, Any]] | StreamingHttpResponse:
    """A response from any chat completions model: `previous_response_id` or `conversation` carries the
    context; stored unless `store` is false. With `stream: true`, the Responses API's event stream."""
    if payload.previous_response_id and payload.conversation:
        raise BadRequest(
            "Use previous_response_id or conversation, not both.", code="invalid_value", param="conversation"
        )
    key = guards.openai_client_key(request)
    writes = payload.store is not False or payload.conversation is not None
    owner = owner_for_writing(request) if writes else caller_of(request).owner
    wanted = response_request(payload)
    guards.check_max_tokens(payload.max_output_tokens, param="max_output_tokens")  # before anything is held
    turn_id = responses.turn_id_of(wanted, owner, guards.client_request_id(request))
    admission = await guards.admit(
        request,
        None if key == settings.LLM_API_KEY else key,
        output_cap=guards.requested_cap(payload.max_output_tokens),
        **responses.reads(wanted, owner, turn_id),
    )
    prepared = await responses.prepare(
        wanted,
        owner=owner,
        api_key=key,
        admission=admission,
        turn_id=turn_id,
        quota_key=guards.client_identity(request),
    )
    if payload.stream:
        return sse.event_stream(await response_stream.open_stream(prepared))
    return Status(200, await responses.create(prepared))


@router.get(
    "/{response_id}", response={200: ResponseOut, **NOT_FOUND}, summary="A stored response (Responses API)"
)
async def retrieve_response(request: HttpRequest, response_id: str) -> Status[dict[str, Any]]:
    """A response stored by POST /v1/responses (not with `store: false`), as it was answered."""
    return Status(200, await responses.retrieve(caller_of(request).owner, response_id))


@router.delete(
    "/{response_id}",
    response={200: ResponseDeletedOut, **NOT_FOUND},
    summary="Delete a stored response (Responses API)",
)
async def delete_response(request: HttpRequest, response_id: str) -> Status[dict[str, Any]]:
    """Delete a stored response: it can no longer be read nor continued, and a chain that passes
    through it is sent from the response after it."""
    return Status(200, await responses.delete(caller_of(request).owner, response_id))


@router.get(
    "/{response_id}/input_items",
    response={200: ItemListOut, **NOT_FOUND, 400: OpenAIErrorOut},
    summary="A stored response's input items (Responses API)",
)
async def response_input_items(
    request: HttpRequest, response_id: str, page: Query[ItemsQuery]
) -> Status[dict[str, Any]]:
    """The items given as the response's `input` (not those of the responses before it), newest first
    unless `order=asc`."""
    listed = await responses.input_items(
        caller_of(request).owner, response_id, after=page.after, limit=page.limit, order=page.order
    )
    return Status(200, listed)
