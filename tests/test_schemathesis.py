"""Schemathesis against the live server's /openapi.json, the fake upstream behind it: no 5xx, and
every response conforms to the schema."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SECRET, LiveServer
from tests.fake_upstream import FakeUpstream

ACCESS_KEY = "ak-schemathesis-0123456789abcdef"
EXAMPLES = 25


@pytest.fixture(scope="module")
def guarded_server(fake_upstream: FakeUpstream) -> Iterator[LiveServer]:
    server = LiveServer(
        {
            "LLM_BASE_URL": fake_upstream.url,
            "LLM_API_KEY": SECRET,
            "BACKEND_API_KEYS": "ak-another-key-0123456789",
            "ADMIN_API_KEYS": ACCESS_KEY,  # an admin key reaches every operation, diagnostics included
            "LLM_MAX_RETRIES": "0",
            "RATE_LIMIT": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    yield server
    server.stop()


def test_it_survives_schemathesis(guarded_server: LiveServer, tmp_path: Path) -> None:
    binary = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(binary), "run", f"{guarded_server.url}/openapi.json",
            "--max-examples", str(EXAMPLES), "--seed", "20261125",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--header", f"X-API-Key: {ACCESS_KEY}",
            "--request-timeout", "15", "--no-color",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = result.stdout[-3000:]
    print(summary)  # the operation and request counts, for the closing note
    assert result.returncode == 0, summary
    tested = re.search(r"Tested: (\d+)", result.stdout)
    generated = re.search(r"(\d+) generated", result.stdout)
    assert tested and int(tested.group(1)) >= 30, summary
    assert generated and int(generated.group(1)) >= 500, summary
    assert SECRET not in result.stdout
