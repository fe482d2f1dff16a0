"""Prometheus metrics. With several workers, PROMETHEUS_MULTIPROC_DIR makes /metrics cover them all;
figures the store already shares (tokens, evictions, conversations) are read from it at scrape time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUESTS = Counter(
    "gateway_http_requests", "HTTP requests answered, by route and status.", ["method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "gateway_http_request_duration_seconds",
    "Time from request to the last byte of the answer, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UPSTREAM_SECONDS = Histogram(
    "gateway_upstream_request_duration_seconds",
    "Time for one upstream call to answer (headers, for streams), by outcome.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UPSTREAM_ERRORS = Counter("gateway_upstream_errors", "Failed upstream calls, by kind.", ["kind"])
UPSTREAM_RETRIES = Counter(
    "gateway_upstream_retries", "Upstream calls tried again after a transient failure."
)
STREAMS_IN_FLIGHT = Gauge(
    "gateway_streams_in_flight", "Streamed replies being sent right now.", multiprocess_mode="livesum"
)
REQUESTS_BY_KEY = Counter(
    "gateway_key_requests", "HTTP requests made with each named access or admin key.", ["key"]
)
RATE_LIMITED = Counter("gateway_rate_limited_requests", "Requests refused by the rate limit.")
BUDGET_EXCEEDED = Counter(
    "gateway_budget_exceeded_requests", "Requests refused because a token budget was spent.", ["budget"]
)


class StoreSnapshot(Collector):
    """Figures read from the (possibly shared) store for this scrape."""

    def __init__(self, usage: dict[str, Any] | None, conversations: dict[str, int | None]) -> None:
        self.usage = usage
        self.conversations = conversations

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "gateway_active_conversations", "Stored conversations, by kind.", labels=["kind"]
        )
        for kind, count in self.conversations.items():
            if count is not None:
                active.add_metric([kind], count)
        yield active
        if self.usage is None:
            return
        tokens = CounterMetricFamily(
            "gateway_tokens", "Tokens used upstream, by model and direction.", labels=["model", "direction"]
        )
        calls = CounterMetricFamily(
            "gateway_model_requests", "Upstream calls by model and outcome.", labels=["model", "outcome"]
        )
        for model, figures in sorted(self.usage["by_model"].items()):
            tokens.add_metric([model, "prompt"], figures["prompt_tokens"])
            tokens.add_metric([model, "completion"], figures["completion_tokens"])
            calls.add_metric([model, "ok"], figures["requests"] - figures["errors"])
            calls.add_metric([model, "error"], figures["errors"])
        yield tokens
        yield calls
        yield CounterMetricFamily(
            "gateway_evictions",
            "Conversations evicted to stay under CONVERSATION_MAX.",
            value=self.usage["evictions"],
        )


def render(usage: dict[str, Any] | None, conversations: dict[str, int | None]) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    snapshot = CollectorRegistry()
    snapshot.register(StoreSnapshot(usage, conversations))
    return body + generate_latest(snapshot)
