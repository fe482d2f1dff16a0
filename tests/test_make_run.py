"""`make run` and the container start through one serve script that checks HOST, PORT and WORKERS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_program


def serve(**env: str) -> subprocess.CompletedProcess[str]:
    names = ("REDIS_URL", "HOST", "PORT", "WORKERS", "STORE_SNAPSHOT_PATH")
    clean = {k: v for k, v in os.environ.items() if k not in names}
    return subprocess.run(
        [sys.executable, "-m", "config.serve"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_refuses_several_workers_without_redis() -> None:
    make = require_program("make", "make")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [make, "--no-print-directory", "run", "WORKERS=2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Configuration error: WORKERS=2 needs REDIS_URL" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKERS", "abc"),
        ("WORKERS", "0"),
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("HOST", "not a host"),
        ("SHUTDOWN_GRACE_SECONDS", "soon"),
    ],
)
def test_it_names_the_bad_setting_in_one_line(name: str, value: str) -> None:
    result = serve(**{name: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Configuration error: {name} ")
    assert "Illegal number" not in result.stderr and "--port" not in result.stderr


def test_it_refuses_several_workers_with_a_snapshot_path(tmp_path: Path) -> None:
    result = serve(WORKERS="2", STORE_SNAPSHOT_PATH=str(tmp_path / "conversations.snapshot"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: WORKERS=2 with STORE_SNAPSHOT_PATH")
    assert "use REDIS_URL" in lines[0]
