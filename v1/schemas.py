"""Shapes of /v1/*: OpenAI's own."""

from __future__ import annotations

from typing import Any, Literal

from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt

from gateway.schemas import MODEL_PATTERN


class CompletionMessage(BaseModel):
    # pydantic's BaseModel, not ninja's Schema: Schema drops undeclared fields, and OpenAI's
    # other fields (top_p, stop, tools, ...) must reach the upstream.
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class CompletionsIn(BaseModel):
    """OpenAI's Chat Completions request; fields not listed here are passed through upstream."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, pattern=MODEL_PATTERN, examples=["openai/gpt-4o-mini"])
    messages: list[CompletionMessage] = Field(..., min_length=1)
    # Strict: the body goes upstream as it came, so what is checked here must be what is sent ("false"
    # read as false here, but as true by an upstream, would stream to a client not expecting it).
    stream: StrictBool | None = False
    temperature: StrictFloat | None = Field(None, ge=0.0, le=2.0)  # (an int is a float here too)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)


class ModelCard(Schema):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelList(Schema):
    object: str = "list"
    data: list[ModelCard]


class CompletionChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int = 0
    message: dict[str, Any] = Field(..., examples=[{"role": "assistant", "content": "Hello!"}])
    finish_reason: str | None = Field(None, examples=["stop"])


class ChatCompletionOut(BaseModel):
    """OpenAI's chat completion object, as the upstream sent it (fields beyond these pass through)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(None, examples=["gen-123"])
    object: str = Field("chat.completion", examples=["chat.completion"])
    created: int | None = Field(None, examples=[1764158400])
    model: str = Field(..., examples=["openai/gpt-4o-mini"])
    choices: list[CompletionChoice]
    usage: dict[str, Any] | None = Field(
        None, examples=[{"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}]
    )
