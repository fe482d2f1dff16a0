"""The API describes itself: the root index lists every operation (generated from the schema), the
OpenAPI document publishes every documented path with a declared answer shape and an example, and
/docs serves Swagger UI.

In-process through the NinjaAPI, and one live smoke test over real HTTP (/docs through uvicorn)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from django.test import AsyncClient

from tests.answers import DOCUMENTED, ok
from tests.conftest import SECRET


def normalised(path: str) -> str:
    """A path with every {parameter} written {id}."""
    return re.sub(r"\{[^}]+\}", "{id}", path)


def test_it_serves_the_interactive_docs(http: httpx.Client) -> None:
    """The live smoke test of the NinjaAPI's own pages."""
    response = http.get("/docs")
    assert SECRET not in response.text
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


async def test_it_lists_every_documented_endpoint_at_the_root(client: AsyncClient) -> None:
    body = await ok(client, "GET", "/", headers={"Accept": "application/json"})
    assert body["status"] == "running"
    assert isinstance(body["name"], str) and body["name"]
    assert isinstance(body["version"], str) and body["version"]
    assert isinstance(body["description"], str)
    assert body["documentation"] == "/docs"
    assert body["openapi"] == "/openapi.json"
    listed = {normalised(key) for key in body["endpoints"]}
    missing = [f"{m} {p}" for m, p in DOCUMENTED if f"{m} {p}" not in listed]
    assert missing == []
    for extra in ("GET /docs", "GET /openapi.json", "GET /ui", "POST /v1/chat/completions", "GET /metrics"):
        assert extra in listed


async def test_it_lists_at_the_root_exactly_the_operations_of_the_schema(client: AsyncClient) -> None:
    index = (await ok(client, "GET", "/"))["endpoints"]
    schema = await ok(client, "GET", "/openapi.json")
    operations = {f"{method.upper()} {path}" for path, ops in schema["paths"].items() for method in ops}
    assert operations
    pages = {"GET /docs", "GET /openapi.json", "GET /ui"}
    assert set(index) == operations | pages


async def test_it_publishes_every_documented_path_in_openapi(client: AsyncClient) -> None:
    schema = await ok(client, "GET", "/openapi.json")
    assert schema["openapi"].startswith("3.")
    operations = {
        (method.upper(), normalised(path)) for path, ops in schema["paths"].items() for method in ops
    }
    missing = [f"{m} {p}" for m, p in DOCUMENTED if (m, p) not in operations]
    assert missing == []


async def test_it_declares_the_shape_of_every_answer(client: AsyncClient) -> None:
    schema: dict[str, Any] = await ok(client, "GET", "/openapi.json")
    components = schema["components"]["schemas"]
    operations = [(m, p, op) for p, ops in schema["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 30
    undeclared = []
    for method, path, operation in operations:
        assert operation.get("summary"), f"{method} {path} has no summary"
        answers = operation["responses"]["200"]["content"]
        media = answers["text/plain"] if "text/plain" in answers else answers["application/json"]
        ref = media.get("schema", {}).get("$ref", "")
        if ref:
            properties = components[ref.rsplit("/", 1)[1]].get("properties", {})
            if not properties:
                undeclared.append(f"{method} {path}")
                continue
            has_example = any("examples" in p or "default" in p or "$ref" in p for p in properties.values())
            if not has_example:
                undeclared.append(f"{method} {path}")
        elif "example" not in media:
            undeclared.append(f"{method} {path}")
    assert undeclared == []
