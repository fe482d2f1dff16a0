"""CORS and security headers."""

from __future__ import annotations

from typing import Any

from django.test import AsyncClient


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
