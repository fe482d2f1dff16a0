"""Each bad setting stops start-up with one line that names its variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BAD = [
    ("LLM_TEMPERATURE", "hot"),
    ("LLM_TEMPERATURE", "2.5"),
    ("LLM_MAX_TOKENS", "many"),
    ("LLM_MAX_TOKENS", "5000"),
    ("LLM_MAX_TOKENS_LIMIT", "0"),
    ("LLM_TIMEOUT", "-1"),
    ("LLM_BASE_URL", "ftp://example.org"),
    ("LLM_BASE_URL", "not a url"),
    ("LLM_BASE_URL", "https://example.org/v1?key=secret"),
    ("LLM_BASE_URL", "https://user:pass@example.org/v1"),
    ("ALLOWED_MODELS", "anthropic/*"),
    ("CHAT_HISTORY_MESSAGES", "ten"),
    ("CHAT_CONTEXT_TOKENS", "-5"),
    ("CONVERSATION_TTL", "0"),
    ("CONVERSATION_MAX", "1.5"),
    ("CONVERSATION_MAX_MESSAGES", "1"),
    ("MESSAGE_MAX_CHARS", "x"),
    ("PORT", "99999"),
    ("DEBUG", "maybe"),
    ("LOG_LEVEL", "LOUD"),
    ("LOG_FORMAT", "xml"),
    ("REDIS_URL", "http://127.0.0.1:6379"),
    ("REDIS_URL", "memcached://cache:11211"),
    ("RATE_LIMIT", "lots"),
    ("RATE_LIMIT", "60/fortnight"),
    ("LLM_MAX_RETRIES", "-1"),
    ("LLM_RETRY_MAX_WAIT", "soon"),
    ("MAX_REQUEST_BYTES", "12"),
    ("ALLOW_CLIENT_API_KEY", "perhaps"),
    ("DEBUG_ENDPOINTS", "2"),
    ("TRUST_PROXY_HEADERS", "yes please"),
    ("METRICS_ENABLED", "sometimes"),
    ("ALLOWED_PASSTHROUGH_EXTRAS", "plugins,everything"),
]


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import config.asgi"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(("name", "value"), BAD)
def test_it_refuses_to_start_with_a_bad_value(name: str, value: str) -> None:
    result = start({name: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert lines[0].startswith("Configuration error:")


def test_it_starts_with_the_defaults() -> None:
    result = start({})
    assert result.returncode == 0, result.stderr


def test_it_never_prints_the_key_when_refusing() -> None:
    result = start({"LLM_API_KEY": "sk-or-v1-never-print-me", "LLM_TEMPERATURE": "9"})
    assert result.returncode != 0
    assert "sk-or-v1-never-print-me" not in result.stderr + result.stdout
    in_url = start({"LLM_BASE_URL": "ftp://user:url-secret-123@example.org/v1"})
    assert in_url.returncode != 0 and "url-secret-123" not in in_url.stderr + in_url.stdout


def test_it_accepts_a_redis_url_with_a_password() -> None:
    assert start({"REDIS_URL": "redis://:pa55word@127.0.0.1:6399/0?socket_timeout=1"}).returncode == 0
