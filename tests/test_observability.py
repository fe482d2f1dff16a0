"""Request ids, the access line (no secret and no forged line in it), JSON logs and Prometheus metrics."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SECRET, LiveServer, RedisServer
from tests.fake_upstream import FakeUpstream, Reply, error_body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(page: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


def test_it_keeps_a_callers_request_id_everywhere(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    rid = "trace-4f2a.9:abc"
    response = http.post(
        "/chat/message", json={"message": "hi", "conversation_id": "rid-1"}, headers={"X-Request-ID": rid}
    )
    assert response.headers["x-request-id"] == rid
    assert fake_upstream.completions()[0].headers["x-request-id"] == rid
    missing = http.get("/chat/conversations/nope", headers={"X-Request-ID": rid})
    assert missing.headers["x-request-id"] == rid and missing.json()["request_id"] == rid
    records = http.get("/api/hf/logs?limit=100").json()["logs"]
    mine = [r for r in records if r.get("request_id") == rid]
    assert {r["path"] for r in mine if r["logger"] == "gateway.access"} == {
        "/chat/message",
        "/chat/conversations/<conversation_id>",  # the public log names no conversation
    }
    access = next(r for r in mine if r.get("path") == "/chat/message")
    assert "conversation_id" not in access and access["model"] == "openai/gpt-4o-mini"
    assert access["tokens"] == 19 and access["upstream_ms"] > 0 and access["duration_ms"] > 0


@pytest.mark.parametrize("incoming", ["has spaces", "x" * 129, "semi;colon", ""])
def test_it_replaces_an_unsafe_request_id(http: httpx.Client, incoming: str) -> None:
    response = http.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] != incoming
    assert len(response.headers["x-request-id"]) == 32


def test_it_counts_exactly_what_happened(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    before = samples(http.get("/metrics").text)
    for n in range(3):
        assert (
            http.post("/chat/message", json={"message": f"m{n}", "model": "fake/metered"}).status_code == 200
        )
    fake_upstream.queue(Reply(status=402, body=error_body(402, "pay")))
    assert http.post("/chat/message", json={"message": "x", "model": "fake/metered"}).status_code == 402
    assert http.get("/chat/conversations/none-such").status_code == 404
    after = samples(http.get("/metrics").text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gateway_http_requests_total", method="POST", route="/chat/message", status="200") == 3
    assert moved("gateway_http_requests_total", method="POST", route="/chat/message", status="402") == 1
    assert (
        moved(
            "gateway_http_requests_total",
            method="GET",
            route="/chat/conversations/<conversation_id>",
            status="404",
        )
        == 1
    )
    assert moved("gateway_http_request_duration_seconds_count", route="/chat/message") == 4
    assert moved("gateway_upstream_errors_total", kind="upstream_payment_required") == 1
    assert moved("gateway_upstream_request_duration_seconds_count", outcome="ok") == 3
    assert moved("gateway_tokens_total", model="fake/metered", direction="completion") == 21
    assert moved("gateway_tokens_total", model="fake/metered", direction="prompt") == 36
    assert moved("gateway_model_requests_total", model="fake/metered", outcome="error") == 1
    assert value(after, "gateway_streams_in_flight") == 0
    assert value(after, "gateway_active_conversations", kind="chat") >= 3
    assert SECRET not in http.get("/metrics").text


@pytest.fixture
def json_server(fake_upstream: FakeUpstream) -> Iterator[LiveServer]:
    server = LiveServer({"LLM_BASE_URL": fake_upstream.url, "LLM_API_KEY": SECRET, "LOG_FORMAT": "json"})
    yield server
    server.stop()


def test_it_writes_json_log_lines(json_server: LiveServer) -> None:
    httpx.post(f"{json_server.url}/chat/message", json={"message": "hi"}, headers={"X-Request-ID": "json-1"})
    httpx.get(f"{json_server.url}/nowhere")
    output = json_server.stop()
    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line, uvicorn's included, is JSON
    access = [r for r in records if r["logger"] == "gateway.access"]
    chat = next(r for r in access if r["path"] == "/chat/message")
    assert chat["request_id"] == "json-1" and chat["status"] == 200 and chat["tokens"] == 19
    assert any(r["path"] == "/nowhere" and r["status"] == 404 for r in access)
    assert SECRET not in output


def test_it_sums_metrics_over_workers(fake_upstream: FakeUpstream, redis_server: RedisServer) -> None:
    with tempfile.TemporaryDirectory() as metrics_dir:
        env = {
            "LLM_BASE_URL": fake_upstream.url,
            "LLM_API_KEY": SECRET,
            "REDIS_URL": redis_server.url.replace("/0", "/3"),
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            "RATE_LIMIT": "0",
        }
        server = LiveServer(env, workers=2)
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for n in range(20):
                    client.post(
                        "/memory-chat/message", json={"message": f"n{n}"}, headers={"Connection": "close"}
                    )
                page = samples(client.get("/metrics").text)
            got = value(
                page, "gateway_http_requests_total", method="POST", route="/memory-chat/message", status="200"
            )
            assert got == 20
        finally:
            server.stop()


def test_it_keeps_metrics_for_admin_keys(fake_upstream: FakeUpstream) -> None:
    server = LiveServer(
        {
            "LLM_BASE_URL": fake_upstream.url,
            "BACKEND_API_KEYS": "app:ak-metrics-0123456789",
            "ADMIN_API_KEYS": "scraper:adm-metrics-0123456789",
        }
    )
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        access = {"X-API-Key": "ak-metrics-0123456789"}
        assert httpx.get(f"{server.url}/metrics", headers=access).status_code == 403
        assert httpx.post(
            f"{server.url}/memory-chat/message", json={"message": "hi"}, headers=access
        ).is_success
        admin = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": "adm-metrics-0123456789"})
        assert admin.status_code == 200
        page = samples(admin.text)
        assert value(page, "gateway_key_requests_total", key="app") >= 2  # named, never the key itself
        assert "ak-metrics-0123456789" not in admin.text
    finally:
        server.stop()
    off = LiveServer({"LLM_BASE_URL": fake_upstream.url, "METRICS_ENABLED": "false"})
    try:
        assert httpx.get(f"{off.url}/metrics").status_code == 404
    finally:
        off.stop()


def test_it_keeps_secrets_and_forged_lines_out_of_access_lines(http: httpx.Client) -> None:
    http.get(f"/chat/conversations/{SECRET}")
    http.get("/x%0a2026-11-25 21:00:00,000 INFO gateway.access: GET /admin 200 forged")
    logs = http.get("/api/hf/logs?limit=20").json()["logs"]
    text = str(logs)
    assert SECRET not in text
    assert logs and all("\n" not in r["message"] for r in logs)
    assert not [r for r in logs if r["message"].startswith("GET /admin")]
    unmatched = [r for r in logs if r.get("status") == 404 and r.get("path") == "unmatched"]
    assert unmatched, "the public log shows an unmatched path only as 'unmatched'"
