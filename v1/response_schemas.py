"""Shapes of /v1/responses and /v1/conversations, declared from the `openai` SDK's own types (the
SDK is a test dependency only, so they are written out here; tests let the SDK parse every answer):

- requests: `types/responses/response_create_params.py`, `response_input_item_param.py`,
  `function_tool_param.py`, `response_text_config_param.py`; `types/conversations/
  conversation_create_params.py`, `conversation_update_params.py`, `item_create_params.py`,
  `item_list_params.py`;
- answers: `types/responses/response.py`, `response_output_message.py`, `response_output_text.py`,
  `response_function_tool_call_item.py`, `response_function_tool_call_output_item.py`,
  `response_usage.py`, `response_item_list.py`; `types/conversations/conversation.py`,
  `conversation_deleted_resource.py`, `conversation_item_list.py`.

Only what this gateway does is declared: text, function tools and function calls. Items accept the
fields an SDK sends back with them (ids, status, annotations) and ignore those; a request's unknown
fields are refused (400 with `param`), as are the features named below.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict, Discriminator, Tag, field_validator

from gateway.schemas import MODEL_PATTERN

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MAX_ITEMS_ADDED = 20


class _Item(BaseModel):
    """An input item: fields beyond these (status, phase, annotations...) are read and let go."""

    model_config = ConfigDict(extra="ignore")


class TextPartIn(_Item):
    type: Literal["input_text", "output_text", "text"]
    text: str


class RefusalPartIn(_Item):
    type: Literal["refusal"]
    refusal: str


def _other_than(*kinds: str) -> Any:
    """A `type` that is none of `kinds`: the union's other branches never overlap it in /openapi.json
    (a oneOf whose branches overlap leaves schema-driven clients such as Schemathesis little to send)."""
    return Field(..., pattern=rf"^(?!({'|'.join(kinds)})$)")


# Python's regex engine, for the lookahead of _other_than (the default Rust engine has none).
_OTHER = ConfigDict(extra="allow", regex_engine="python-re")


class OtherPartIn(_Item):
    """Images, files, audio: refused with 400 (this gateway passes text only)."""

    model_config = _OTHER
    type: str = _other_than("input_text", "output_text", "text", "refusal")


def _type_of(value: Any) -> Any:
    """The `type` of an item as sent (a dict) or as parsed (a model); None for anything else."""
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


def _part_kind(value: Any) -> str | None:
    if not isinstance(value, dict | BaseModel):
        return None  # pydantic refuses it: not a content part
    kind = _type_of(value)
    if kind == "refusal":
        return "refusal"
    return "text" if kind in ("input_text", "output_text", "text") else "other"


ContentPartIn = Annotated[
    Annotated[TextPartIn, Tag("text")]
    | Annotated[RefusalPartIn, Tag("refusal")]
    | Annotated[OtherPartIn, Tag("other")],
    Discriminator(_part_kind),
]


class InputMessageIn(_Item):
    """EasyInputMessage / ResponseInputItem.Message / ResponseOutputMessage sent back as input."""

    type: Literal["message"] | None = None
    id: str | None = Field(None, pattern=ID_PATTERN)
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPartIn] = Field(..., examples=["Hello!"])


class FunctionCallIn(_Item):
    """ResponseFunctionToolCall: a call the model made, sent back as context."""

    type: Literal["function_call"]
    id: str | None = Field(None, pattern=ID_PATTERN)
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputIn(_Item):
    """ResponseInputItem.FunctionCallOutput: what the client's function returned."""

    type: Literal["function_call_output"]
    id: str | None = Field(None, pattern=ID_PATTERN)
    call_id: str
    output: str | list[ContentPartIn]


class OtherItemIn(_Item):
    """Reasoning, item references, built-in tool calls...: refused with 400."""

    model_config = _OTHER
    type: str = _other_than("message", "function_call", "function_call_output")


def _item_kind(value: Any) -> str | None:
    if not isinstance(value, dict | BaseModel):
        return None
    kind = _type_of(value) or "message"
    return kind if kind in ("message", "function_call", "function_call_output") else "other"


InputItem = Annotated[
    Annotated[InputMessageIn, Tag("message")]
    | Annotated[FunctionCallIn, Tag("function_call")]
    | Annotated[FunctionCallOutputIn, Tag("function_call_output")]
    | Annotated[OtherItemIn, Tag("other")],
    Discriminator(_item_kind),
]


class FunctionToolIn(_Item):
    """FunctionToolParam."""

    type: Literal["function"]
    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["get_weather"])
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class BuiltInToolIn(_Item):
    """web_search, file_search, code_interpreter, mcp...: refused with 400."""

    model_config = _OTHER
    type: str = _other_than("function")


def _tool_kind(value: Any) -> str | None:
    if not isinstance(value, dict | BaseModel):
        return None
    return "function" if _type_of(value) == "function" else "built-in"


ToolIn = Annotated[
    Annotated[FunctionToolIn, Tag("function")] | Annotated[BuiltInToolIn, Tag("built-in")],
    Discriminator(_tool_kind),
]


class ToolChoiceFunctionIn(_Item):
    type: Literal["function"]
    name: str


class ToolChoiceOtherIn(_Item):
    """A built-in tool, an allowed-tools list...: refused with 400."""

    model_config = _OTHER
    type: str = _other_than("function")


class FormatTextIn(_Item):
    type: Literal["text"]


class FormatJsonObjectIn(_Item):
    type: Literal["json_object"]


class FormatJsonSchemaIn(_Item):
    """ResponseFormatTextJSONSchemaConfigParam."""

    type: Literal["json_schema"]
    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(..., alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfigIn(_Item):
    format: (
        Annotated[FormatTextIn | FormatJsonObjectIn | FormatJsonSchemaIn, Field(discriminator="type")] | None
    ) = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ConversationRefIn(_Item):
    id: str = Field(..., pattern=ID_PATTERN)


class ReasoningIn(_Item):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


def _metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("at most 16 keys")
    if any(len(k) > 64 or len(v) > 512 for k, v in value.items()):
        raise ValueError("keys may be at most 64 characters long and values 512")
    return value


def _unsupported(feature: str) -> Any:
    def check(value: Any) -> Any:
        if value:
            raise ValueError(f"{feature} is not supported by this gateway")
        return value

    return check


class ResponseCreateIn(BaseModel):
    """ResponseCreateParams: what POST /v1/responses takes."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, pattern=MODEL_PATTERN, examples=["openai/gpt-4o-mini"])
    input: str | list[InputItem] = Field(..., examples=["Tell me a three-sentence bedtime story."])
    instructions: str | None = Field(None, examples=["Be brief."])
    previous_response_id: str | None = Field(None, pattern=ID_PATTERN)
    conversation: str | ConversationRefIn | None = Field(None, description="a conversation id, or {id}")
    store: bool | None = True
    stream: bool | None = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    tools: list[ToolIn] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunctionIn | ToolChoiceOtherIn | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfigIn | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    reasoning: ReasoningIn | None = None
    # accepted, and without effect here
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    stream_options: dict[str, Any] | None = None
    # refused when set, each with its own reason
    background: bool | None = None
    prompt: dict[str, Any] | None = None

    _metadata = field_validator("metadata")(_metadata)
    _background = field_validator("background")(_unsupported("background mode"))
    _prompt = field_validator("prompt")(_unsupported("a reusable prompt"))

    @field_validator("input")
    @classmethod
    def _some_input(cls, value: str | list[Any]) -> str | list[Any]:
        if isinstance(value, list) and not value:
            raise ValueError("must hold at least one item")
        return value


class ItemsQuery(Schema):
    """ItemListParams / InputItemListParams: one page of items; `after` is the last id of the page before."""

    after: str | None = Field(None, max_length=128)
    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    include: list[str] | None = None


class ConversationCreateIn(BaseModel):
    """ConversationCreateParams."""

    model_config = ConfigDict(extra="forbid")

    items: list[InputItem] | None = Field(None, max_length=MAX_ITEMS_ADDED)
    metadata: dict[str, str] | None = Field(None, examples=[{"topic": "travel"}])

    _metadata = field_validator("metadata")(_metadata)


class ConversationUpdateIn(BaseModel):
    """ConversationUpdateParams."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, str] | None = Field(..., examples=[{"topic": "travel"}])

    _metadata = field_validator("metadata")(_metadata)


class ItemsCreateIn(BaseModel):
    """ItemCreateParams."""

    model_config = ConfigDict(extra="forbid")

    items: list[InputItem] = Field(..., min_length=1, max_length=MAX_ITEMS_ADDED)
    include: list[str] | None = None


# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# answers


class _Answer(BaseModel):
    """A plain pydantic model: ninja's Schema would run a Python validator on every nested object of
    every answer (the DjangoGetter wrapper), which these never need."""


class InputTextOut(_Answer):
    type: Literal["input_text"]
    text: str


class OutputTextOut(_Answer):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] = []
    logprobs: list[dict[str, Any]] = []


class MessageItemOut(_Answer):
    """ResponseOutputMessage (assistant) / ResponseInputMessageItem / conversations.Message."""

    id: str = Field(..., examples=["msg_6f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"])
    type: Literal["message"]
    role: Literal["user", "assistant", "system", "developer"]
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[Annotated[InputTextOut | OutputTextOut, Field(discriminator="type")]]


class FunctionCallOut(_Answer):
    """ResponseFunctionToolCallItem."""

    id: str = Field(..., examples=["fc_6f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"])
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]


class FunctionCallOutputOut(_Answer):
    """ResponseFunctionToolCallOutputItem."""

    id: str
    type: Literal["function_call_output"]
    call_id: str
    output: str
    status: Literal["in_progress", "completed", "incomplete"]


ItemOut = Annotated[MessageItemOut | FunctionCallOut | FunctionCallOutputOut, Field(discriminator="type")]


class ItemListOut(_Answer):
    """ResponseItemList / ConversationItemList (first_id and last_id are null on an empty page)."""

    object: Literal["list"] = "list"
    data: list[ItemOut]
    first_id: str | None
    last_id: str | None
    has_more: bool


class InputTokensDetailsOut(_Answer):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetailsOut(_Answer):
    reasoning_tokens: int


class ResponseUsageOut(_Answer):
    input_tokens: int = Field(..., examples=[12])
    input_tokens_details: InputTokensDetailsOut
    output_tokens: int = Field(..., examples=[7])
    output_tokens_details: OutputTokensDetailsOut
    total_tokens: int = Field(..., examples=[19])


class ResponseErrorOut(_Answer):
    code: str = Field(..., examples=["server_error"])
    message: str


class ConversationRefOut(_Answer):
    id: str


class ResponseOut(_Answer):
    """Response (`output_text` is the SDK's convenience property, sent for plain HTTP clients too)."""

    id: str = Field(..., examples=["resp_6f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"])
    object: Literal["response"] = "response"
    created_at: int = Field(..., examples=[1764158400])
    status: Literal["completed", "failed", "in_progress", "incomplete"]
    completed_at: int | None = None
    background: bool = False
    error: ResponseErrorOut | None = None
    incomplete_details: dict[str, str] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str = Field(..., examples=["openai/gpt-4o-mini"])
    output: list[ItemOut]
    output_text: str = Field(..., examples=["Once upon a time..."])
    parallel_tool_calls: bool
    previous_response_id: str | None = None
    conversation: ConversationRefOut | None = None
    store: bool
    temperature: float | None = None
    top_p: float | None = None
    text: dict[str, Any]
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    truncation: Literal["auto", "disabled"]
    usage: ResponseUsageOut | None = None
    user: str | None = None
    metadata: dict[str, str]


class ResponseDeletedOut(_Answer):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool


class ConversationObjectOut(_Answer):
    """conversations.Conversation."""

    id: str = Field(..., examples=["conv_6f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"])
    object: Literal["conversation"] = "conversation"
    created_at: int = Field(..., examples=[1764158400])
    metadata: dict[str, str] = Field(..., examples=[{"topic": "travel"}])


class ConversationDeletedOut(_Answer):
    """conversations.ConversationDeletedResource."""

    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool
