"""/health, /ready and /metrics: liveness (GET and HEAD, no upstream call), readiness of the store, and
the Prometheus page (off with METRICS_ENABLED=false). What the metrics count is in test_observability.py.

In-process through the NinjaAPI, and one live smoke test over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from django.test import AsyncClient

from tests.answers import assert_error, assert_iso, ok
from tests.conftest import SECRET
from tests.fake_upstream import FakeUpstream


def test_it_answers_liveness_checks_over_http(http: httpx.Client) -> None:
    """The live smoke test of the operational endpoints: GET and HEAD /health through uvicorn."""
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    head = http.head("/health")
    assert head.status_code == 200
    assert head.content == b""


async def test_it_answers_the_main_health_check(client: AsyncClient, fake_upstream: FakeUpstream) -> None:
    body = await ok(client, "GET", "/health")
    assert body["status"] == "healthy"
    assert isinstance(body["service"], str) and body["service"]
    assert_iso(body["timestamp"])
    assert fake_upstream.requests == []


async def test_it_answers_head_on_the_health_check(client: AsyncClient) -> None:
    response = await client.head("/health")
    assert response.status_code == 200


async def test_it_reports_readiness_when_the_store_answers(client: AsyncClient) -> None:
    body = await ok(client, "GET", "/ready")
    assert body["ready"] is True
    assert body["api_available"] is True
    assert body["store"] == "local-memory"
    assert isinstance(body["message"], str) and body["message"]


async def test_it_serves_the_metrics_as_prometheus_text(client: AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "gateway_active_conversations" in text
    assert SECRET not in text


async def test_it_hides_the_metrics_when_they_are_off(client: AsyncClient, settings: Any) -> None:
    settings.METRICS_ENABLED = False
    assert_error(await client.get("/metrics"), 404)
