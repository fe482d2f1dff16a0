"""Settings come from the environment through the typed readers of core/env.py, checked once at start-up:
a bad value stops start-up with one `Configuration error:` line that names its variable and repeats
neither a key nor a URL's value.

The readers are unit-tested directly. Each setting's own bounds are proved by running
config/settings.py in this process (runpy) with one bad value. Three real start-ups prove what an
operator sees: the one line on stderr, no secret in it, and a clean start with the defaults."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import (
    env_bool,
    env_bytes,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_secret,
    env_str,
    env_url,
)
from tests.conftest import ROOT

SETTINGS_FILE = ROOT / "config" / "settings.py"
VAR = "GATEWAY_TEST_SETTING"  # a name no real setting uses


def refusal(excinfo: pytest.ExceptionInfo[ImproperlyConfigured]) -> str:
    message = str(excinfo.value)
    assert VAR in message, message
    return message


# --- env_str ----------------------------------------------------------------------------------------


def test_it_reads_a_string_or_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)
    assert env_str(VAR, "fallback") == "fallback"
    monkeypatch.setenv(VAR, "  as given  ")
    assert env_str(VAR, "fallback") == "  as given  "


# --- env_bool ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " On "])
def test_it_reads_true_in_every_usual_spelling(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, False) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", "", "  "])
def test_it_reads_false_in_every_usual_spelling(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, True) is False


def test_it_takes_the_boolean_default_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)
    assert env_bool(VAR, True) is True
    assert env_bool(VAR, False) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "yes please", "tru"])
def test_it_refuses_a_boolean_it_cannot_read(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_bool(VAR, False)
    assert "true or false" in refusal(excinfo)


# --- env_int ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [(None, 7), ("", 7), ("  ", 7), ("42", 42), (" 3 ", 3)])
def test_it_reads_a_whole_number_or_its_default(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: int
) -> None:
    if raw is None:
        monkeypatch.delenv(VAR, raising=False)
    else:
        monkeypatch.setenv(VAR, raw)
    assert env_int(VAR, 7) == expected


@pytest.mark.parametrize("raw", ["ten", "1.5", "0x10", "1e3"])
def test_it_refuses_what_is_not_a_whole_number(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_int(VAR, 7)
    assert "whole number" in refusal(excinfo)


def test_it_keeps_a_whole_number_within_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, expected in (("1", 1), ("10", 10)):
        monkeypatch.setenv(VAR, raw)
        assert env_int(VAR, 5, minimum=1, maximum=10) == expected
    monkeypatch.setenv(VAR, "0")
    with pytest.raises(ImproperlyConfigured) as low:
        env_int(VAR, 5, minimum=1, maximum=10)
    assert "at least 1 and at most 10" in refusal(low)
    monkeypatch.setenv(VAR, "11")
    with pytest.raises(ImproperlyConfigured) as high:
        env_int(VAR, 5, minimum=1, maximum=10)
    assert "at most 10" in refusal(high)
    monkeypatch.setenv(VAR, "-1")
    with pytest.raises(ImproperlyConfigured) as negative:
        env_int(VAR, 5)
    assert "at least 0" in refusal(negative)


# --- env_float --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 0.7), ("", 0.7), ("0", 0.0), ("2", 2.0), (" 1.25 ", 1.25)]
)
def test_it_reads_a_number_or_its_default(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: float
) -> None:
    if raw is None:
        monkeypatch.delenv(VAR, raising=False)
    else:
        monkeypatch.setenv(VAR, raw)
    assert env_float(VAR, 0.7, minimum=0.0, maximum=2.0) == expected


@pytest.mark.parametrize(("raw", "reason"), [("hot", "a number"), ("2.5", "between"), ("-0.1", "between")])
def test_it_refuses_a_number_it_cannot_use(monkeypatch: pytest.MonkeyPatch, raw: str, reason: str) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_float(VAR, 0.7, minimum=0.0, maximum=2.0)
    assert reason in refusal(excinfo)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_it_refuses_a_number_that_is_not_finite(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_float(VAR, 1.0, minimum=0.0, maximum=3600.0)
    refusal(excinfo)


# --- env_list ---------------------------------------------------------------------------------------


def test_it_reads_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, " openai/* , anthropic/claude-3-haiku,,  ")
    assert env_list(VAR, "*") == ["openai/*", "anthropic/claude-3-haiku"]


def test_it_takes_the_list_default_when_unset_and_nothing_when_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)
    assert env_list(VAR, "a,b") == ["a", "b"]
    assert env_list(VAR, "") == []
    monkeypatch.setenv(VAR, "")
    assert env_list(VAR, "a,b") == []


# --- env_url ----------------------------------------------------------------------------------------

HTTP = ("http", "https")
REDIS = ("redis", "rediss", "unix")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://openrouter.ai/api/v1/", "https://openrouter.ai/api/v1"),
        ("  http://127.0.0.1:11434/v1  ", "http://127.0.0.1:11434/v1"),
    ],
)
def test_it_reads_a_url_without_its_trailing_slash(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: str
) -> None:
    monkeypatch.setenv(VAR, raw)
    assert env_url(VAR, "https://default.example/v1", schemes=HTTP) == expected


def test_it_takes_the_url_default_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)
    assert env_url(VAR, "https://default.example/v1/", schemes=HTTP) == "https://default.example/v1"
    assert env_url(VAR, "", schemes=REDIS, plain=False) == ""
    monkeypatch.setenv(VAR, "  ")
    assert env_url(VAR, "", schemes=REDIS, plain=False) == ""
    # Set but empty is the default, not a refusal to start.
    assert env_url(VAR, "https://default.example/v1", schemes=HTTP) == "https://default.example/v1"


@pytest.mark.parametrize(
    "raw", ["ftp://example.org", "not a url", "example.org/v1", "https:///v1", "memcached://cache:11211"]
)
def test_it_refuses_a_url_with_another_scheme_or_no_host(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_url(VAR, "https://default.example", schemes=HTTP)
    message = refusal(excinfo)
    assert "http://, https://" in message
    assert raw not in message


@pytest.mark.parametrize(
    "raw",
    [
        "https://user:url-secret-123@example.org/v1",
        "https://example.org/v1?key=url-secret-123",
        "https://example.org/v1#url-secret-123",
    ],
)
def test_it_refuses_a_plain_url_carrying_a_secret_and_never_repeats_it(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_url(VAR, "https://default.example", schemes=HTTP)
    message = refusal(excinfo)
    assert "user:password" in message
    assert "url-secret-123" not in message


def test_it_never_repeats_a_refused_urls_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "http://:url-secret-123@127.0.0.1:6379")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_url(VAR, "", schemes=REDIS, plain=False)
    assert "url-secret-123" not in refusal(excinfo)


@pytest.mark.parametrize(
    "raw",
    [
        "redis://:pa55word@127.0.0.1:6399/0?socket_timeout=1",
        "rediss://cache:6380/1",
        "unix:///run/redis.sock",
    ],
)
def test_it_accepts_a_store_url_with_its_password_and_options(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(VAR, raw)
    assert env_url(VAR, "", schemes=REDIS, plain=False) == raw


# --- env_secret -------------------------------------------------------------------------------------


def test_it_reads_the_first_secret_that_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    alias = f"{VAR}_ALIAS"
    monkeypatch.delenv(VAR, raising=False)
    monkeypatch.delenv(alias, raising=False)
    assert env_secret(VAR, alias) == ""
    monkeypatch.setenv(alias, " sk-alias ")
    assert env_secret(VAR, alias) == "sk-alias"
    monkeypatch.setenv(VAR, "   ")
    assert env_secret(VAR, alias) == "sk-alias"  # blank counts as unset
    monkeypatch.setenv(VAR, "sk-main")
    assert env_secret(VAR, alias) == "sk-main"


# --- env_rate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("60/minute", (60, 60)),
        ("5/second", (5, 1)),
        ("100/HOUR", (100, 3600)),
        (" 1000/day ", (1000, 86400)),
        ("0", (0, 0)),
        ("off", (0, 0)),
    ],
)
def test_it_reads_a_rate_as_count_and_seconds(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[int, int]
) -> None:
    monkeypatch.setenv(VAR, raw)
    assert env_rate(VAR, "60/minute") == expected


def test_it_takes_the_rate_default_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)
    assert env_rate(VAR, "60/minute") == (60, 60)


def test_it_takes_the_size_default_when_set_but_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "")
    assert env_bytes(VAR, "64MiB", minimum=1) == 64 * 1024**2


def test_it_takes_the_rate_default_when_set_but_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    # A blank `RATE_LIMIT=` line must not lift the limit: only 0 or off do.
    monkeypatch.setenv(VAR, "  ")
    assert env_rate(VAR, "60/minute") == (60, 60)
    assert env_rate(VAR, "0") == (0, 0)


@pytest.mark.parametrize(
    "raw", ["lots", "60/fortnight", "0/minute", "-1/minute", "1.5/minute", "60", "/minute"]
)
def test_it_refuses_a_rate_it_cannot_read(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_rate(VAR, "60/minute")
    assert "60/minute" in refusal(excinfo)


# --- env_choice -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, "inline"), ("", "inline"), ("THREAD", "thread"), (" thread ", "thread")]
)
def test_it_reads_a_choice_or_its_default(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: str
) -> None:
    if raw is None:
        monkeypatch.delenv(VAR, raising=False)
    else:
        monkeypatch.setenv(VAR, raw)
    assert env_choice(VAR, "inline", ("inline", "thread")) == expected


def test_it_refuses_a_choice_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "process")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_choice(VAR, "inline", ("inline", "thread"))
    assert "inline, thread" in refusal(excinfo)


# --- config/settings.py: every setting's bounds, in this process -------------------------------------

# Every variable config/settings.py reads, so that the outer environment does not leak into these tests.
SETTING_NAMES = sorted(
    set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]*)"', SETTINGS_FILE.read_text())) | {"OPENROUTER_API_KEY"}
)

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
    ("TRUSTED_PROXY_HOPS", "-1"),
    ("TRUSTED_PROXY_HOPS", "one"),
    ("TRUSTED_PROXY_HOPS", "11"),
    ("STORE_MAX_BYTES", "lots"),
    ("STORE_MAX_BYTES", "0"),
    ("STORE_MAX_BYTES", "512KiB"),
    ("STORE_MAX_BYTES", "64 MB"),
    ("CLIENT_STORAGE_BYTES", "-1"),
    ("CLIENT_STORAGE_BYTES", "1000"),
    ("CLIENT_STORAGE_BYTES", "1GiB"),  # more than the whole store
    ("CLIENT_TOKEN_BUDGET", "lots"),
    ("CLIENT_TOKEN_BUDGET", "200000/fortnight"),
    ("TOTAL_TOKEN_BUDGET", "-5/day"),
    ("METRICS_ENABLED", "sometimes"),
    ("ASGI_EDGE", "process"),
    ("LLM_STREAM_MAX_SECONDS", "0"),
    ("LLM_STREAM_MAX_SECONDS", "forever"),
    ("REQUEST_READ_TIMEOUT", "0.5"),
    ("SHUTDOWN_GRACE_SECONDS", "2.5"),
    ("SHUTDOWN_GRACE_SECONDS", "-1"),
    ("CORS_ALLOW_PRIVATE_NETWORK", "sure"),
    ("STORE_SNAPSHOT_INTERVAL", "soon"),
    ("STORE_SNAPSHOT_INTERVAL", "0"),
    ("STORE_SNAPSHOT_PATH", "/no-such-folder-here/conversations.snapshot"),
    ("STORE_SNAPSHOT_PATH", "/"),
    ("ALLOWED_PASSTHROUGH_EXTRAS", "plugins,everything"),
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    assert len(SETTING_NAMES) > 30  # the pattern above still finds the settings
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def load_settings() -> dict[str, Any]:
    """config/settings.py run afresh, as start-up runs it; Django's loaded settings are left alone."""
    return runpy.run_path(str(SETTINGS_FILE))


def refused_line() -> str:
    """The message start-up would print: settings.py exits with it."""
    with pytest.raises(SystemExit) as excinfo:
        load_settings()
    message = excinfo.value.code
    assert isinstance(message, str)
    assert len(message.splitlines()) == 1, message
    assert message.startswith("Configuration error:")
    return message


@pytest.mark.parametrize(("name", "value"), BAD)
def test_it_refuses_each_bad_setting_naming_its_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv(name, value)
    assert name in refused_line()


def test_it_loads_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    loaded = load_settings()
    assert loaded["LLM_BASE_URL"] == "https://openrouter.ai/api/v1"
    assert loaded["LLM_MODEL"] == "openai/gpt-4o-mini"
    assert loaded["LLM_TEMPERATURE"] == 0.7
    assert (loaded["LLM_MAX_TOKENS"], loaded["LLM_MAX_TOKENS_LIMIT"]) == (1000, 4096)
    assert loaded["RATE_LIMIT"] == (60, 60)
    assert loaded["REDIS_URL"] == ""
    assert loaded["LLM_API_KEY"] == ""
    assert loaded["ALLOWED_MODELS"] == ["*"]
    assert loaded["ASGI_EDGE"] == "inline"


def test_it_reads_the_key_from_its_openrouter_alias(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENROUTER_API_KEY", "sk-or-v1-alias")
    assert load_settings()["LLM_API_KEY"] == "sk-or-v1-alias"


def test_it_accepts_a_redis_url_with_a_password(clean_env: pytest.MonkeyPatch) -> None:
    url = "redis://:pa55word@127.0.0.1:6399/0?socket_timeout=1"
    clean_env.setenv("REDIS_URL", url)
    assert load_settings()["REDIS_URL"] == url


def test_it_never_shows_the_key_or_a_url_secret_when_refusing(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LLM_API_KEY", "sk-or-v1-never-print-me")
    clean_env.setenv("LLM_TEMPERATURE", "9")
    assert "sk-or-v1-never-print-me" not in refused_line()
    clean_env.delenv("LLM_TEMPERATURE")
    clean_env.setenv("LLM_BASE_URL", "ftp://user:url-secret-123@example.org/v1")
    line = refused_line()
    assert "LLM_BASE_URL" in line
    assert "url-secret-123" not in line and "sk-or-v1-never-print-me" not in line


# --- real start-ups: what an operator sees ----------------------------------------------------------


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE" and k not in SETTING_NAMES}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import config.asgi"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_stops_start_up_with_one_line_naming_the_variable() -> None:
    result = start({"LLM_TEMPERATURE": "hot"})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error:")
    assert "LLM_TEMPERATURE" in lines[0]


def test_it_prints_neither_the_key_nor_the_url_when_refusing_a_url() -> None:
    result = start(
        {"LLM_API_KEY": "sk-or-v1-never-print-me", "LLM_BASE_URL": "ftp://user:url-secret-123@example.org/v1"}
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error:") and "LLM_BASE_URL" in lines[0]
    output = result.stderr + result.stdout
    assert "url-secret-123" not in output
    assert "sk-or-v1-never-print-me" not in output


def test_it_starts_with_the_defaults() -> None:
    result = start({})
    assert result.returncode == 0, result.stderr


def test_it_never_prints_the_key_when_refusing() -> None:
    result = start({"LLM_API_KEY": "sk-or-v1-never-print-me", "LLM_TEMPERATURE": "9"})
    assert result.returncode != 0
    assert "sk-or-v1-never-print-me" not in result.stderr + result.stdout
    in_url = start({"LLM_BASE_URL": "ftp://user:url-secret-123@example.org/v1"})
    assert in_url.returncode != 0 and "url-secret-123" not in in_url.stderr + in_url.stdout


def test_it_reads_sizes_with_units() -> None:
    code = "from config import settings as s; print(s.STORE_MAX_BYTES, s.CLIENT_STORAGE_BYTES)"
    full = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env = {**full, "STORE_MAX_BYTES": "2GiB", "CLIENT_STORAGE_BYTES": "512 KiB"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.split() == [str(2 * 1024**3), str(512 * 1024)], result.stderr
    off = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**full, "CLIENT_STORAGE_BYTES": "0"},
        capture_output=True,
        text=True,
    )
    assert off.stdout.split() == [str(64 * 1024**2), "0"], off.stderr


def snapshot_refusal(path: Path | str) -> str:
    result = start({"STORE_SNAPSHOT_PATH": str(path)})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: STORE_SNAPSHOT_PATH ")
    return lines[0]


def test_it_refuses_a_snapshot_path_it_could_not_write(tmp_path: Path) -> None:
    assert "does not exist" in snapshot_refusal(tmp_path / "missing" / "conversations.snapshot")
    assert "is a folder" in snapshot_refusal(tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert "is not a folder" in snapshot_refusal(a_file / "conversations.snapshot")


def test_it_starts_with_a_snapshot_path_in_a_writable_folder(tmp_path: Path) -> None:
    assert start({"STORE_SNAPSHOT_PATH": str(tmp_path / "conversations.snapshot")}).returncode == 0


def test_it_does_not_check_the_snapshot_path_when_redis_keeps_conversations() -> None:
    env = {"STORE_SNAPSHOT_PATH": "/no-such-folder-here/s", "REDIS_URL": "redis://127.0.0.1:6399/0"}
    assert start(env).returncode == 0
