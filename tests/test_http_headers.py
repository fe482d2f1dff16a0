"""CORS and security headers, on every answer: the edge's 413 too; CORS_ALLOWED_ORIGINS read from the
environment."""

from __future__ import annotations

import socket
from typing import Any

import httpx
from django.test import AsyncClient

from tests.conftest import LiveServer
from tests.fake_upstream import FakeUpstream


async def test_it_sets_security_headers_on_every_answer(client: AsyncClient) -> None:
    for path in ("/health", "/nowhere", "/chat/conversations"):
        response = await client.get(path)
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Frame-Options"] == "DENY"
    assert (await client.get("/docs"))["X-Frame-Options"] == "SAMEORIGIN"


async def test_it_allows_any_origin_without_credentials_by_default(client: AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": "https://anywhere.example"})
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response


async def test_it_allows_a_listed_origin_with_credentials(client: AsyncClient, settings: Any) -> None:
    settings.CORS_ALLOW_ALL_ORIGINS = False
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    settings.CORS_ALLOW_CREDENTIALS = True
    allowed = await client.get("/health", headers={"Origin": "https://app.example"})
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example"
    assert allowed["Access-Control-Allow-Credentials"] == "true"
    refused = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused


async def test_it_answers_a_preflight(client: AsyncClient, settings: Any) -> None:
    settings.CORS_ALLOW_ALL_ORIGINS = False
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    response = await client.options(
        "/chat/message",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization, x-api-key",
        },
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "authorization" in response["Access-Control-Allow-Headers"].lower()
    assert "x-api-key" in response["Access-Control-Allow-Headers"].lower()


async def test_it_lets_only_the_space_frame_the_chat_page(client: AsyncClient) -> None:
    response = await client.get("/ui")
    assert "X-Frame-Options" not in response
    assert "frame-ancestors 'self' https://huggingface.co" in response["Content-Security-Policy"]


def test_it_gives_the_413_the_usual_headers(http: httpx.Client) -> None:
    big = b"x" * (2 * 1024 * 1024)
    plain = http.post("/chat/message", content=big, headers={"Origin": "https://a.example"})
    assert plain.status_code == 413
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert plain.headers["access-control-allow-origin"] == "*"
    openai_shaped = http.post("/v1/chat/completions", content=big)
    assert openai_shaped.json()["error"]["code"] == "request_too_large"


def test_it_maps_cors_origins_from_the_environment(fake_upstream: FakeUpstream) -> None:
    server = LiveServer({"LLM_BASE_URL": fake_upstream.url, "CORS_ALLOWED_ORIGINS": "https://app.example"})
    try:
        allowed = httpx.get(f"{server.url}/health", headers={"Origin": "https://app.example"})
        refused = httpx.get(f"{server.url}/health", headers={"Origin": "https://evil.example"})
    finally:
        server.stop()
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in refused.headers


def test_it_frames_an_answer_by_its_length_for_an_http_1_0_client(live_server_url: str) -> None:
    """A JSON answer carries its Content-Length: an HTTP/1.0 client must never get chunked encoding."""
    host, port = live_server_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = head.decode().lower()
    assert head.startswith(b"HTTP/1.1 200") and "transfer-encoding" not in headers
    assert f"content-length: {len(body)}" in headers and body.startswith(b"{")
