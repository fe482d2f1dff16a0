"""`make run` refuses several workers without a shared store."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import ROOT, require_program


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
    assert "REDIS_URL" in result.stdout + result.stderr
