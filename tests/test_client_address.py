"""The client address behind TRUSTED_PROXY_HOPS proxies: what a client writes cannot change it, and no
header, however long or malformed, grows a store key, the process or the log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core.cache import caches
from django.test import AsyncClient, RequestFactory

from gateway.guards import client_address, client_identity
from tests.conftest import ROOT, SECRET, LiveServer
from tests.fake_upstream import FakeUpstream

PEER = "198.51.100.7"
HUGE = "1.2.3.4" + "9" * 50_000  # 50 KB: one entry, no commas
MALFORMED = ["", "   ", "not-an-ip", "1.2.3.4:8080", "[2001:db8::1]", "1.2.3", "1.2.3.4.5", ",,,", HUGE]


def request_with(forwarded: str | None, peer: str = PEER) -> Any:
    request = RequestFactory().get("/")
    request.META["REMOTE_ADDR"] = peer
    if forwarded is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    return request


def test_it_uses_the_socket_peer_with_no_trusted_proxy(settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 0
    assert client_address(request_with("203.0.113.1")) == PEER


@pytest.mark.parametrize(
    ("hops", "forwarded", "client"),
    [
        (1, "203.0.113.1", "203.0.113.1"),
        (1, "10.0.0.1, 203.0.113.1", "203.0.113.1"),  # the left-most entry is the client's own writing
        (1, "10.0.0.1,203.0.113.1", "203.0.113.1"),
        (2, "10.0.0.1, 203.0.113.1, 192.0.2.50", "203.0.113.1"),
        (2, "203.0.113.1, 192.0.2.50", "203.0.113.1"),
        (2, "192.0.2.50", PEER),  # fewer entries than proxies: the header cannot be trusted
    ],
)
def test_it_takes_the_entry_as_many_places_from_the_right_as_there_are_proxies(
    settings: Any, hops: int, forwarded: str, client: str
) -> None:
    settings.TRUSTED_PROXY_HOPS = hops
    assert client_address(request_with(forwarded)) == client


@pytest.mark.parametrize("forwarded", [*MALFORMED, None])
def test_it_falls_back_to_the_peer_for_a_missing_or_malformed_entry(settings: Any, forwarded: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 1
    assert client_address(request_with(forwarded)) == PEER
    assert client_address(request_with(f"203.0.113.1, {forwarded}")) == PEER


def test_it_counts_an_ipv6_client_as_its_64(settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 1
    assert client_address(request_with("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert client_address(request_with("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"
    assert client_address(request_with("::ffff:203.0.113.9")) == "203.0.113.9"


def test_it_gives_a_peer_that_is_no_address_one_shared_identity(settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 0
    assert client_address(request_with(None, peer="")) == "unknown"
    assert client_address(request_with(None, peer=HUGE)) == "unknown"


def test_it_keys_every_client_with_a_digest_of_fixed_length(settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 1
    identities = {client_identity(request_with(f"{n}.{n}.{n}.{n}")) for n in range(1, 50)}
    assert {len(i) for i in identities} == {len("ip:") + 32} and len(identities) == 49
    assert PEER not in "".join(identities)


async def test_it_makes_one_counter_whatever_the_header_says(client: AsyncClient, settings: Any) -> None:
    settings.TRUSTED_PROXY_HOPS = 1
    settings.RATE_LIMIT = (10_000, 3600)
    counters = caches["default"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a CacheKeyWarning would fail the request
        for n in range(300):
            forwarded = f"{MALFORMED[n % len(MALFORMED)]}{n}" if n % 2 else HUGE
            response = await client.post(
                "/memory-chat/message",
                {"message": "hi"},
                content_type="application/json",
                headers={"X-Forwarded-For": forwarded},
            )
            assert response.status_code == 200
    rate_counters = [key for key in counters._cache if "rate:" in key]  # type: ignore[attr-defined]
    assert len(rate_counters) == 1 and max(len(k) for k in counters._cache) < 100  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("env", "hops"),
    [
        ({}, 0),
        ({"TRUST_PROXY_HEADERS": "true"}, 1),
        ({"TRUST_PROXY_HEADERS": "false"}, 0),
        ({"TRUST_PROXY_HEADERS": "true", "TRUSTED_PROXY_HOPS": "2"}, 2),
        ({"TRUST_PROXY_HEADERS": "true", "TRUSTED_PROXY_HOPS": "0"}, 0),
    ],
)
def test_it_reads_trust_proxy_headers_as_one_proxy(env: dict[str, str], hops: int) -> None:
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TRUST_PROXY_HEADERS", "TRUSTED_PROXY_HOPS", "DJANGO_SETTINGS_MODULE")
    }
    result = subprocess.run(
        [sys.executable, "-c", "from config import settings; print(settings.TRUSTED_PROXY_HOPS)"],
        cwd=ROOT,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == str(hops), result.stderr


# Over HTTP: one proxy trusted, two requests a minute per client.


@pytest.fixture(scope="module")
def behind_one_proxy(fake_upstream: FakeUpstream) -> Iterator[LiveServer]:
    server = LiveServer(
        {
            "LLM_BASE_URL": fake_upstream.url,
            "LLM_API_KEY": SECRET,
            "LLM_MAX_RETRIES": "0",
            "TRUSTED_PROXY_HOPS": "1",
            "RATE_LIMIT": "2/day",
        }
    )
    yield server
    server.stop()


def post(server: LiveServer, path: str, forwarded: str) -> int:
    return httpx.post(
        f"{server.url}{path}",
        json={"message": "hi"},
        headers={"X-Forwarded-For": forwarded},
        timeout=10,
    ).status_code


def test_it_never_lets_a_rotated_left_most_entry_escape_the_limit(behind_one_proxy: LiveServer) -> None:
    statuses = [post(behind_one_proxy, "/openrouter/test", f"10.0.0.{n}, 203.0.113.10") for n in range(1, 6)]
    assert statuses == [200, 200, 429, 429, 429]


def test_it_gives_two_clients_behind_one_proxy_their_own_budgets(behind_one_proxy: LiveServer) -> None:
    first = [post(behind_one_proxy, "/memory-chat/message", "203.0.113.21") for _ in range(3)]
    second = [post(behind_one_proxy, "/memory-chat/message", "10.9.9.9, 203.0.113.22") for _ in range(3)]
    assert first == [200, 200, 429] and second == [200, 200, 429]


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status").read().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_it_shrugs_off_huge_and_malformed_headers(fake_upstream: FakeUpstream) -> None:
    """A few thousand requests with a 50 KB or malformed X-Forwarded-For: they all count as the peer
    (so they are rate limited together), and the process neither grows nor writes a line about them.

    "Grows": a store key per header (the old behaviour) would add about 250 MiB here. Any 50 KB header,
    on any path, leaves glibc holding a few MiB of freed buffers that it trims again later (measured with
    an X-Other header on /health: +12 MiB over 14,000 requests, then back down), hence the margin."""
    server = LiveServer(
        {
            "LLM_BASE_URL": fake_upstream.url,
            "LLM_API_KEY": SECRET,
            "TRUSTED_PROXY_HOPS": "1",
            "RATE_LIMIT": "2/day",  # one window for the whole test, wherever the minute turns
            "LOG_LEVEL": "WARNING",
        }
    )
    try:
        headers = [HUGE, *[m for m in MALFORMED if m.strip()], "x" * 1000, "1.2.3.4, " + HUGE]
        with httpx.Client(base_url=server.url, timeout=10) as http:

            def flood(count: int) -> list[int]:
                return [
                    http.post(
                        "/memory-chat/message",
                        json={"message": "hi"},
                        headers={"X-Forwarded-For": f"{headers[n % len(headers)]}{n}"},
                    ).status_code
                    for n in range(count)
                ]

            warm = flood(500)
            assert warm[:2] == [200, 200] and set(warm[2:]) == {429}
            before = rss_kib(server.process.pid)
            started = time.monotonic()
            assert set(flood(3000)) == {429}
            elapsed = time.monotonic() - started
            after = rss_kib(server.process.pid)
        print(f"\n3000 requests with bad X-Forwarded-For in {elapsed:.1f} s: RSS {before} -> {after} KiB")
        assert after - before < 16 * 1024, (before, after)
    finally:
        output = server.stop()
    assert "Warning" not in output and "CacheKey" not in output, output[:2000]
