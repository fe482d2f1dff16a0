"""/openapi.json and /docs: built once per process, served from memory, GET and HEAD only."""

from __future__ import annotations

import time

import httpx
import pytest


def test_it_serves_the_schema_from_memory_after_the_first_request(http: httpx.Client) -> None:
    first = http.get("/openapi.json", headers={"X-Request-ID": "schema-first"})
    assert first.status_code == 200
    timings = []
    for n in range(50):
        started = time.perf_counter()
        response = http.get("/openapi.json", headers={"X-Request-ID": f"schema-{n}"})
        timings.append(time.perf_counter() - started)
        assert response.content == first.content
    # Each answer's own time, from the service's access line (the client's adds this machine's noise)
    logs = http.get("/api/hf/logs?limit=300").json()["logs"]
    served = {r["request_id"]: r["duration_ms"] for r in logs if r.get("path") == "/openapi.json"}
    durations = sorted(served[f"schema-{n}"] for n in range(50))
    # A rebuild takes 45 ms or more every time; on a shared two-core machine the odd answer is delayed
    # by other processes, so two of the fifty may be.
    assert durations[-3] < 5.0, durations[-5:]
    assert sorted(timings)[25] < 0.005  # the median as the client sees it, body transfer included


def test_it_serves_the_docs_page_from_memory(http: httpx.Client) -> None:
    first = http.get("/docs")
    again = http.get("/docs")
    assert first.status_code == again.status_code == 200
    assert again.text == first.text and "swagger" in again.text.lower()
    assert again.headers["x-frame-options"] == "SAMEORIGIN"


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_it_answers_head(http: httpx.Client, path: str) -> None:
    response = http.head(path)
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "TRACE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_it_refuses_other_methods(http: httpx.Client, path: str, method: str) -> None:
    response = http.request(method, path)
    assert response.status_code == 405
    body = response.json()
    assert body["status"] == "error" and body["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, HEAD"
