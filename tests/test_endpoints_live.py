"""Every endpoint of the API document, called over real HTTP against the live server.

The live server is shared by the whole session: no test assumes an empty store; each uses its own
conversation ids or compares counts before and after.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import SECRET
from tests.fake_upstream import FakeUpstream, Reply

# Every operation the API document names, as (method, path).
DOCUMENTED: list[tuple[str, str]] = [
    ("POST", "/chat/message"),
    ("POST", "/memory-chat/message"),
    ("POST", "/openrouter/test"),
    ("POST", "/test-chat/message"),
    ("GET", "/health"),
    ("GET", "/chat/health"),
    ("GET", "/memory-chat/health"),
    ("GET", "/openrouter/health"),
    ("GET", "/"),
    ("GET", "/chat/"),
    ("GET", "/memory-chat/"),
    ("GET", "/openrouter/"),
    ("GET", "/chat/models"),
    ("GET", "/openrouter/models"),
    ("GET", "/api/options/config"),
    ("GET", "/chat/conversations"),
    ("GET", "/memory-chat/conversations"),
    ("GET", "/chat/conversations/{id}"),
    ("GET", "/memory-chat/conversations/{id}"),
    ("DELETE", "/chat/conversations/{id}"),
    ("DELETE", "/memory-chat/conversations"),
    ("GET", "/api/hf/status"),
    ("GET", "/api/hf/ready"),
    ("GET", "/api/hf/environment"),
    ("GET", "/api/hf/debug"),
    ("GET", "/api/hf/logs"),
    ("POST", "/api/hf/test-conversation"),
    ("GET", "/api/simple/health"),
    ("POST", "/api/simple/conversation"),
]

DOCUMENTED_MODELS = {
    "openai/gpt-4o-mini",
    "openai/gpt-4o",
    "anthropic/claude-3.5-sonnet",
    "anthropic/claude-3-haiku",
    "google/gemini-pro",
    "meta-llama/llama-3.1-8b-instruct",
}

FAKE_USAGE_TOTAL = 19  # the fake upstream's usage for an ordinary completion: 12 + 7


def call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request; no answer may ever contain the server's key."""
    response = http.request(method, path, **kwargs)
    assert SECRET not in response.text, f"{method} {path} leaked the API key"
    return response


def ok(http: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = call(http, method, path, **kwargs)
    assert response.status_code == 200, (method, path, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    return body


def assert_iso(value: Any) -> None:
    assert isinstance(value, str)
    datetime.fromisoformat(value)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert_iso(body["timestamp"])
    if code is not None:
        assert body["code"] == code
    return body


def assert_conversation_not_found(response: httpx.Response) -> None:
    body = assert_error(response, 404, "conversation_not_found")
    assert body["message"] == "Conversation not found"
    assert set(body) == {"status", "code", "message", "timestamp", "request_id"}


def own_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def send_chat(http: httpx.Client, payload: dict[str, Any]) -> dict[str, Any]:
    return ok(http, "POST", "/chat/message", json=payload)


def send_memory(http: httpx.Client, payload: dict[str, Any]) -> dict[str, Any]:
    return ok(http, "POST", "/memory-chat/message", json=payload)


# --- service information and health ---------------------------------------------------------------


def test_it_lists_every_documented_endpoint_at_the_root(http: httpx.Client) -> None:
    body = ok(http, "GET", "/")
    assert body["status"] == "running"
    assert isinstance(body["name"], str) and body["name"]
    assert isinstance(body["version"], str) and body["version"]
    assert isinstance(body["description"], str)
    assert body["documentation"] == "/docs"
    assert body["openapi"] == "/openapi.json"
    listed = {re.sub(r"\{[^}]+\}", "{id}", key) for key in body["endpoints"]}
    missing = [f"{m} {p}" for m, p in DOCUMENTED if f"{m} {p}" not in listed]
    assert missing == []
    for extra in ("GET /docs", "GET /openapi.json", "GET /ui", "POST /v1/chat/completions", "GET /metrics"):
        assert extra in listed


def test_it_answers_the_main_health_check(http: httpx.Client) -> None:
    body = ok(http, "GET", "/health")
    assert body["status"] == "healthy"
    assert isinstance(body["service"], str) and body["service"]
    assert_iso(body["timestamp"])


def test_it_describes_the_chat_service(http: httpx.Client) -> None:
    body = ok(http, "GET", "/chat/")
    assert body["service"] == "openrouter-chat"
    assert isinstance(body["status"], str)
    assert isinstance(body["description"], str) and body["description"]
    assert isinstance(body["active_conversations"], int)
    assert set(body["supported_models"]) >= DOCUMENTED_MODELS
    assert isinstance(body["endpoints"], dict) and body["endpoints"]


def test_it_reports_chat_health_without_the_key(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    body = ok(http, "GET", "/chat/health")
    assert body["status"] == "healthy"
    assert body["service"] == "openrouter-chat"
    assert body["api_key_configured"] is True
    assert isinstance(body["active_conversations"], int)
    assert body["openrouter_endpoint"] == fake_upstream.url
    assert_iso(body["timestamp"])
    assert fake_upstream.completions() == []


def test_it_counts_a_new_chat_conversation_in_chat_health(http: httpx.Client) -> None:
    before = ok(http, "GET", "/chat/health")["active_conversations"]
    send_chat(http, {"message": "count me", "conversation_id": own_id("health")})
    after = ok(http, "GET", "/chat/health")["active_conversations"]
    assert after == before + 1


def test_it_lists_the_chat_models_with_the_recommended_one(http: httpx.Client) -> None:
    body = ok(http, "GET", "/chat/models")
    assert body["status"] == "success"
    models = body["models"]
    assert isinstance(models, list) and models
    for model in models:
        assert {"id", "name", "description", "recommended"} <= set(model)
        assert isinstance(model["id"], str) and isinstance(model["name"], str)
    recommended = [m["id"] for m in models if m["recommended"]]
    assert recommended == ["openai/gpt-4o-mini"]


def test_it_describes_the_openrouter_test_service(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    body = ok(http, "GET", "/openrouter/")
    assert body["service"] == "openrouter-test"
    assert isinstance(body["status"], str)
    assert isinstance(body["description"], str)
    assert isinstance(body["endpoints"], dict) and body["endpoints"]
    assert body["default_model"] == "openai/gpt-4o-mini"
    assert body["base_url"] == fake_upstream.url


def test_it_reports_openrouter_health_with_key_presence_only(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    body = ok(http, "GET", "/openrouter/health")
    assert body["status"] == "healthy"
    assert body["service"] == "openrouter-test"
    assert body["api_key_configured"] is True
    assert body["base_url"] == fake_upstream.url
    assert_iso(body["timestamp"])
    assert body["environment_vars"]["LLM_API_KEY"] == "set"


def test_it_lists_openrouter_model_ids(http: httpx.Client) -> None:
    body = ok(http, "GET", "/openrouter/models")
    assert body["status"] == "success"
    assert isinstance(body["models"], list) and body["models"]
    assert all(isinstance(m, str) for m in body["models"])
    assert body["total_models"] == len(body["models"])
    assert "openai/gpt-4o-mini" in body["models"]
    assert_iso(body["timestamp"])


def test_it_describes_the_memory_chat_service(http: httpx.Client) -> None:
    body = ok(http, "GET", "/memory-chat/")
    assert body["service"] == "memory-chat"
    assert isinstance(body["status"], str)
    assert isinstance(body["description"], str)
    assert isinstance(body["endpoints"], dict) and body["endpoints"]


def test_it_reports_memory_chat_health(http: httpx.Client) -> None:
    body = ok(http, "GET", "/memory-chat/health")
    assert body["status"] == "healthy"
    assert body["service"] == "memory-chat"
    assert isinstance(body["active_conversations"], int)
    assert body["memory_usage"] == "in-memory only"
    assert body["file_dependencies"] == "none"
    assert_iso(body["timestamp"])


def test_it_serves_the_front_end_options(http: httpx.Client) -> None:
    body = ok(http, "GET", "/api/options/config")
    assert body["APP_MODE"] == "oss"
    assert "GITHUB_CLIENT_ID" in body
    assert "POSTHOG_CLIENT_KEY" in body
    assert isinstance(body["FEATURE_FLAGS"]["ENABLE_BILLING"], bool)
    assert isinstance(body["FEATURE_FLAGS"]["HIDE_LLM_SETTINGS"], bool)


# --- /chat/message and its conversations -----------------------------------------------------------


def test_it_runs_the_quick_start_as_written(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    first = send_chat(http, {"message": "Hello! Can you help me with coding?", "model": "openai/gpt-4o-mini"})
    assert first["status"] == "success"
    assert set(first) >= {"conversation_id", "response", "model", "timestamp", "usage", "status"}
    assert first["response"] == "Fake reply to: Hello! Can you help me with coding?"
    assert first["model"] == "openai/gpt-4o-mini"
    assert_iso(first["timestamp"])
    assert set(first["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    conversation_id = first["conversation_id"]
    uuid.UUID(conversation_id)

    second = send_chat(
        http,
        {
            "message": "Write a Python function to calculate fibonacci",
            "conversation_id": conversation_id,
            "model": "openai/gpt-4o-mini",
        },
    )
    assert second["conversation_id"] == conversation_id
    assert second["response"] == "Fake reply to: Write a Python function to calculate fibonacci"

    sent = fake_upstream.completions()
    assert len(sent) == 2
    assert sent[1].body["model"] == "openai/gpt-4o-mini"
    contents = [m["content"] for m in sent[1].body["messages"]]
    assert "Hello! Can you help me with coding?" in contents
    assert contents[-1] == "Write a Python function to calculate fibonacci"


def test_it_grows_message_count_and_total_tokens(http: httpx.Client) -> None:
    conversation_id = own_id("grow")
    first = send_chat(http, {"message": "one", "conversation_id": conversation_id})
    assert first["conversation_id"] == conversation_id
    assert first["message_count"] == 2
    assert first["total_tokens"] == first["usage"]["total_tokens"] == FAKE_USAGE_TOTAL

    second = send_chat(http, {"message": "two", "conversation_id": conversation_id})
    assert second["message_count"] == 4
    assert second["total_tokens"] == first["total_tokens"] + second["usage"]["total_tokens"]
    assert second["total_tokens"] > first["total_tokens"]


def test_it_names_the_model_the_upstream_used(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(Reply(model="fake/served-model"))
    conversation_id = own_id("served")
    body = send_chat(
        http, {"message": "which model?", "model": "openai/gpt-4o-mini", "conversation_id": conversation_id}
    )
    assert fake_upstream.completions()[0].body["model"] == "openai/gpt-4o-mini"
    assert body["model"] == "fake/served-model"

    stored = ok(http, "GET", f"/chat/conversations/{conversation_id}")["conversation"]
    assert stored["model"] == "fake/served-model"
    assert stored["messages"][-1]["model"] == "fake/served-model"


def test_it_lists_a_chat_conversation_with_its_summary(http: httpx.Client) -> None:
    conversation_id = own_id("list")
    send_chat(http, {"message": "list me", "conversation_id": conversation_id})
    body = ok(http, "GET", "/chat/conversations")
    assert body["status"] == "success"
    assert body["total_conversations"] >= 1
    assert isinstance(body["conversations"], list)
    mine = [c for c in body["conversations"] if c["id"] == conversation_id]
    assert len(mine) == 1
    summary = mine[0]
    assert {"id", "created_at", "message_count", "model", "total_tokens", "last_message"} <= set(summary)
    assert summary["message_count"] == 2
    assert summary["total_tokens"] == FAKE_USAGE_TOTAL
    assert summary["last_message"] == "Fake reply to: list me"
    assert_iso(summary["created_at"])


def test_it_shows_one_chat_conversation_with_its_messages(http: httpx.Client) -> None:
    conversation_id = own_id("detail")
    send_chat(http, {"message": "show me", "conversation_id": conversation_id, "model": "openai/gpt-4o"})
    body = ok(http, "GET", f"/chat/conversations/{conversation_id}")
    assert body["status"] == "success"
    conversation = body["conversation"]
    assert conversation["id"] == conversation_id
    assert_iso(conversation["created_at"])
    assert conversation["model"] == "openai/gpt-4o"
    assert conversation["total_tokens"] == FAKE_USAGE_TOTAL
    messages = conversation["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert [m["content"] for m in messages] == ["show me", "Fake reply to: show me"]
    for message in messages:
        assert_iso(message["timestamp"])


def test_it_deletes_a_chat_conversation(http: httpx.Client) -> None:
    conversation_id = own_id("delete")
    send_chat(http, {"message": "delete me", "conversation_id": conversation_id})
    # every owner's conversations (other tests keep some under their own client tokens)
    before = ok(http, "GET", "/chat/health")["active_conversations"]

    body = ok(http, "DELETE", f"/chat/conversations/{conversation_id}")
    assert body["status"] == "success"
    assert body["message"] == f"Deleted conversation {conversation_id}"
    assert body["remaining_conversations"] == before - 1

    assert_conversation_not_found(call(http, "GET", f"/chat/conversations/{conversation_id}"))
    assert_conversation_not_found(call(http, "DELETE", f"/chat/conversations/{conversation_id}"))


def test_it_answers_404_for_an_unknown_chat_conversation(http: httpx.Client) -> None:
    unknown = own_id("never-created")
    assert_conversation_not_found(call(http, "GET", f"/chat/conversations/{unknown}"))
    assert_conversation_not_found(call(http, "DELETE", f"/chat/conversations/{unknown}"))


def test_it_answers_an_unknown_path_in_the_error_shape(http: httpx.Client) -> None:
    response = call(http, "GET", "/no/such/endpoint")
    body = assert_error(response, 404)
    assert response.headers["content-type"].startswith("application/json")
    assert body["code"] != "conversation_not_found"


def test_it_tests_the_upstream_through_openrouter_test(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.queue(Reply(model="fake/served-model", content="pong"))
    body = ok(
        http, "POST", "/openrouter/test", json={"message": "Test OpenRouter", "model": "openai/gpt-4o-mini"}
    )
    assert body["status"] == "success"
    assert body["request_message"] == "Test OpenRouter"
    assert body["response_message"] == "pong"
    assert body["model_used"] == "fake/served-model"
    assert_iso(body["timestamp"])
    assert body["usage"]["total_tokens"] == FAKE_USAGE_TOTAL
    assert isinstance(body["openrouter_response"], dict)
    sent = fake_upstream.completions()
    assert len(sent) == 1
    assert sent[0].body["model"] == "openai/gpt-4o-mini"


def test_it_keeps_no_openrouter_test_conversation(http: httpx.Client) -> None:
    before = ok(http, "GET", "/chat/conversations")["total_conversations"]
    ok(http, "POST", "/openrouter/test", json={"message": "no memory"})
    assert ok(http, "GET", "/chat/conversations")["total_conversations"] == before


# --- memory chat and test chat ---------------------------------------------------------------------


def test_it_echoes_in_memory_chat_without_the_upstream(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    first = send_memory(http, {"message": "Test message", "model": "openai/gpt-4o-mini"})
    assert first["response"] == "Echo from memory chat: Test message"
    assert first["status"] == "success"
    assert first["model"] == "openai/gpt-4o-mini"
    assert first["message_count"] == 2
    assert_iso(first["timestamp"])
    uuid.UUID(first["conversation_id"])

    second = send_memory(http, {"message": "again", "conversation_id": first["conversation_id"]})
    assert second["conversation_id"] == first["conversation_id"]
    assert second["response"] == "Echo from memory chat: again"
    assert second["message_count"] == 4
    assert fake_upstream.requests == []


def test_it_lists_and_shows_a_memory_conversation(http: httpx.Client) -> None:
    conversation_id = own_id("memory")
    send_memory(http, {"message": "remember me", "conversation_id": conversation_id})

    listing = ok(http, "GET", "/memory-chat/conversations")
    assert listing["status"] == "success"
    assert listing["total_conversations"] >= 1
    mine = [c for c in listing["conversations"] if c["id"] == conversation_id]
    assert len(mine) == 1
    assert mine[0]["message_count"] == 2
    assert mine[0]["last_message"] == "Echo from memory chat: remember me"

    detail = ok(http, "GET", f"/memory-chat/conversations/{conversation_id}")
    assert detail["status"] == "success"
    conversation = detail["conversation"]
    assert conversation["id"] == conversation_id
    assert [m["content"] for m in conversation["messages"]] == [
        "remember me",
        "Echo from memory chat: remember me",
    ]


def test_it_deletes_one_memory_conversation(http: httpx.Client) -> None:
    conversation_id = own_id("memory-delete")
    send_memory(http, {"message": "forget me", "conversation_id": conversation_id})
    body = ok(http, "DELETE", f"/memory-chat/conversations/{conversation_id}")
    assert body["status"] == "success"
    assert body["message"] == f"Deleted conversation {conversation_id}"
    assert isinstance(body["remaining_conversations"], int)
    assert_conversation_not_found(call(http, "GET", f"/memory-chat/conversations/{conversation_id}"))


def test_it_answers_404_for_an_unknown_memory_conversation(http: httpx.Client) -> None:
    unknown = own_id("never-created")
    assert_conversation_not_found(call(http, "GET", f"/memory-chat/conversations/{unknown}"))
    assert_conversation_not_found(call(http, "DELETE", f"/memory-chat/conversations/{unknown}"))


def test_it_clears_every_memory_conversation(http: httpx.Client) -> None:
    chat_id = own_id("survives-clear")
    send_chat(http, {"message": "I stay", "conversation_id": chat_id})
    ids = [own_id("clear"), own_id("clear")]
    for conversation_id in ids:
        send_memory(http, {"message": "to be cleared", "conversation_id": conversation_id})
    before = ok(http, "GET", "/memory-chat/conversations")["total_conversations"]
    assert before >= 2

    body = ok(http, "DELETE", "/memory-chat/conversations")
    assert body["status"] == "success"
    assert body["message"] == f"Cleared {before} conversations from memory"
    assert body["remaining_conversations"] == 0

    assert ok(http, "GET", "/memory-chat/conversations")["total_conversations"] == 0
    assert ok(http, "GET", "/memory-chat/health")["active_conversations"] == 0
    for conversation_id in ids:
        assert_conversation_not_found(call(http, "GET", f"/memory-chat/conversations/{conversation_id}"))
    assert ok(http, "GET", f"/chat/conversations/{chat_id}")["conversation"]["id"] == chat_id


def test_it_keeps_memory_and_chat_conversations_apart(http: httpx.Client) -> None:
    memory_id = send_memory(http, {"message": "memory side"})["conversation_id"]
    chat_id = send_chat(http, {"message": "chat side"})["conversation_id"]

    assert_conversation_not_found(call(http, "GET", f"/chat/conversations/{memory_id}"))
    assert_conversation_not_found(call(http, "GET", f"/memory-chat/conversations/{chat_id}"))
    chat_ids = {c["id"] for c in ok(http, "GET", "/chat/conversations?limit=500")["conversations"]}
    memory_ids = {c["id"] for c in ok(http, "GET", "/memory-chat/conversations?limit=500")["conversations"]}
    assert chat_id in chat_ids and memory_id not in chat_ids
    assert memory_id in memory_ids and chat_id not in memory_ids


def test_it_keeps_the_same_id_separate_in_each_chat(http: httpx.Client) -> None:
    shared = own_id("shared")
    send_chat(http, {"message": "real", "conversation_id": shared})
    memory = send_memory(http, {"message": "echo", "conversation_id": shared})
    assert memory["message_count"] == 2
    chat = ok(http, "GET", f"/chat/conversations/{shared}")["conversation"]
    assert [m["content"] for m in chat["messages"]] == ["real", "Fake reply to: real"]


def test_it_echoes_in_test_chat(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    first = ok(http, "POST", "/test-chat/message", json={"message": "ping"})
    assert first["response"] == "Echo: ping (Test response from HF Spaces)"
    assert first["status"] == "success"
    assert first["message_count"] == 2
    assert_iso(first["timestamp"])
    second = ok(
        http,
        "POST",
        "/test-chat/message",
        json={"message": "pong", "conversation_id": first["conversation_id"]},
    )
    assert second["conversation_id"] == first["conversation_id"]
    assert second["message_count"] == 4
    assert fake_upstream.requests == []


# --- HuggingFace Spaces endpoints ------------------------------------------------------------------


def test_it_reports_the_spaces_status(http: httpx.Client) -> None:
    body = ok(http, "GET", "/api/hf/status")
    assert body["status"] == "running"
    assert body["environment"] == "huggingface-spaces"
    assert body["LLM_API_KEY"] == "set"


def test_it_reports_readiness(http: httpx.Client) -> None:
    body = ok(http, "GET", "/api/hf/ready")
    assert body["ready"] is True
    assert isinstance(body["message"], str) and body["message"]
    assert body["api_available"] is True


def test_it_shows_the_environment_with_the_key_as_set(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    body = ok(http, "GET", "/api/hf/environment")
    variables = body["environment_variables"]
    assert variables["LLM_API_KEY"] == "set"
    assert variables["LLM_MODEL"] == "openai/gpt-4o-mini"
    assert variables["LLM_BASE_URL"] == fake_upstream.url
    assert variables["LLM_TEMPERATURE"] == 0.7


def test_it_shows_debug_information(http: httpx.Client) -> None:
    body = ok(http, "GET", "/api/hf/debug")
    assert isinstance(body["system"]["platform"], str) and body["system"]["platform"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", body["system"]["python_version"])
    assert body["environment"]["LLM_API_KEY"] == "set"


def test_it_serves_recent_log_records_including_a_chat_line(http: httpx.Client) -> None:
    conversation_id = own_id("logged")
    send_chat(http, {"message": "log me", "conversation_id": conversation_id})

    body = ok(http, "GET", "/api/hf/logs", params={"limit": 1000})
    assert body["status"] == "success"
    logs = body["logs"]
    assert isinstance(logs, list) and logs
    for record in logs:
        assert {"timestamp", "level", "message"} <= set(record)
    # To anyone but an admin the records name no conversation and no client address.
    assert not [r for r in logs if conversation_id in r["message"]]
    chat_lines = [r for r in logs if r.get("path") == "/chat/message" and r.get("status") == 200]
    assert chat_lines, "no access line for the chat call"
    assert chat_lines[-1]["level"] == "INFO" and "client" not in chat_lines[-1]
    assert "127.0.0.1" not in chat_lines[-1]["message"]


def test_it_limits_the_log_records(http: httpx.Client) -> None:
    send_chat(http, {"message": "make a log line"})
    body = ok(http, "GET", "/api/hf/logs", params={"limit": 1})
    assert len(body["logs"]) == 1


def test_it_filters_the_log_records_by_level(http: httpx.Client) -> None:
    conversation_id = own_id("filtered")
    send_chat(http, {"message": "info only", "conversation_id": conversation_id})
    body = ok(http, "GET", "/api/hf/logs", params={"level": "ERROR", "limit": 1000})
    assert all(r["level"] in {"ERROR", "CRITICAL"} for r in body["logs"])
    assert not any(conversation_id in r["message"] for r in body["logs"])


def test_it_runs_the_hf_test_conversation_with_a_body(http: httpx.Client) -> None:
    body = ok(http, "POST", "/api/hf/test-conversation", json={"message": "hello spaces"})
    assert body["status"] == "success"
    assert body["message"] == "hello spaces"
    assert body["test"] is True
    uuid.UUID(body["conversation_id"])


def test_it_runs_the_hf_test_conversation_without_a_body(http: httpx.Client) -> None:
    body = ok(http, "POST", "/api/hf/test-conversation")
    assert body["status"] == "success"
    assert isinstance(body["message"], str) and body["message"]
    assert body["test"] is True
    uuid.UUID(body["conversation_id"])


def test_it_answers_the_simple_health_check(http: httpx.Client) -> None:
    body = ok(http, "GET", "/api/simple/health")
    assert body["status"] == "healthy"
    assert body["service"] == "simple-conversation"
    assert isinstance(body["message"], str) and body["message"]


def test_it_echoes_a_simple_conversation(http: httpx.Client) -> None:
    body = ok(http, "POST", "/api/simple/conversation", json={"message": "hi simple"})
    assert body["status"] == "success"
    assert body["message"] == "Conversation created successfully"
    assert body["response"] == "Echo: hi simple"
    assert body["user_message"] == "hi simple"
    uuid.UUID(body["conversation_id"])

    given = own_id("simple")
    again = ok(http, "POST", "/api/simple/conversation", json={"message": "x", "conversation_id": given})
    assert again["conversation_id"] == given


# --- documentation ---------------------------------------------------------------------------------


def test_it_serves_the_interactive_docs(http: httpx.Client) -> None:
    response = call(http, "GET", "/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


def test_it_publishes_every_documented_path_in_openapi(http: httpx.Client) -> None:
    schema = ok(http, "GET", "/openapi.json")
    assert schema["openapi"].startswith("3.")
    operations = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{id}", path))
        for path, ops in schema["paths"].items()
        for method in ops
    }
    missing = [f"{m} {p}" for m, p in DOCUMENTED if (m, p) not in operations]
    assert missing == []


# --- the key never leaves the server --------------------------------------------------------------


def test_it_shows_the_key_in_no_answer(http: httpx.Client) -> None:
    conversation_id = send_chat(http, {"message": "secret check"})["conversation_id"]
    memory_id = send_memory(http, {"message": "secret check"})["conversation_id"]
    paths = [
        "/",
        "/health",
        "/chat/",
        "/chat/health",
        "/chat/models",
        "/chat/conversations",
        f"/chat/conversations/{conversation_id}",
        "/openrouter/",
        "/openrouter/health",
        "/openrouter/models",
        "/memory-chat/",
        "/memory-chat/health",
        "/memory-chat/conversations",
        f"/memory-chat/conversations/{memory_id}",
        "/api/hf/status",
        "/api/hf/ready",
        "/api/hf/environment",
        "/api/hf/debug",
        "/api/hf/logs?limit=1000",
        "/api/simple/health",
        "/api/options/config",
        "/docs",
        "/openapi.json",
    ]
    for path in paths:
        response = http.get(path)
        assert response.content, path
        assert SECRET not in response.text, path


def test_it_does_not_echo_the_request_key_in_a_validation_error(http: httpx.Client) -> None:
    response = call(http, "POST", "/chat/message", json={"api_key": SECRET, "max_tokens": "many"})
    assert_error(response, 422)


def test_it_does_not_pass_on_upstream_error_text(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.queue(
        Reply(status=400, body={"error": {"code": 400, "message": f"bad key {SECRET} raw-upstream-text"}})
    )
    response = call(http, "POST", "/chat/message", json={"message": "fail please"})
    body = assert_error(response, 400)
    assert "raw-upstream-text" not in response.text
    assert set(body) >= {"status", "code", "message", "timestamp"}


def test_it_declares_the_shape_of_every_answer(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    operations = [(m, p, op) for p, ops in schema["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 30
    undeclared = []
    for method, path, operation in operations:
        assert operation.get("summary"), f"{method} {path} has no summary"
        answers = operation["responses"]["200"]["content"]
        media = answers["text/plain"] if "text/plain" in answers else answers["application/json"]
        ref = media.get("schema", {}).get("$ref", "")
        if ref:
            properties = components[ref.rsplit("/", 1)[1]].get("properties", {})
            has_example = any("examples" in p or "default" in p or "$ref" in p for p in properties.values())
            if not properties or not has_example:
                undeclared.append(f"{method} {path}")
        elif "example" not in media:
            undeclared.append(f"{method} {path}")
    assert undeclared == []
