"""The server process sets the garbage collector for a long run (config.asgi.settle_garbage_collector):
what start-up built is frozen out of the collector's view, and young collections wait for more objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import SECRET


def test_the_asgi_application_freezes_what_start_up_built_and_collects_young_objects_less_often() -> None:
    probe = (
        "import gc, json; before = gc.get_freeze_count(); import config.asgi; "
        "young = config.asgi.GC_YOUNG_THRESHOLD; "
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold(), young]))"
    )
    env = {**os.environ, "LLM_API_KEY": SECRET, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    before, frozen, threshold, young = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == 0
    assert frozen > 50_000  # Django, Ninja, the routes and schemas: all of it
    assert threshold[0] == young > 700
