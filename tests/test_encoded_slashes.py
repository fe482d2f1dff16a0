"""An encoded slash in the path is refused (400) before routing: it would route as a slash, which a
front proxy that hides paths by prefix does not see."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("path", ["/api%2Fhf%2Flogs", "/api%2fhf%2flogs", "/api/hf%2Flogs", "/chat%2Fhealth"])
def test_it_refuses_an_encoded_slash(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["code"] == "bad_request"
    assert "logs" not in response.text


def test_it_still_routes_other_escapes(http: httpx.Client) -> None:
    assert http.get("/chat/conversations/a%2Eb").status_code == 404
    assert http.get("/chat/conversations/a%2Eb").json()["code"] == "conversation_not_found"


def test_it_lets_a_model_id_hold_an_encoded_slash_and_nothing_else(http: httpx.Client) -> None:
    # OpenAI's SDKs encode `openai/gpt-4o-mini` in `models.retrieve`: the prefix stays `/v1/models/`.
    response = http.get("/v1/models/..%2F..%2Fapi%2Fhf%2Flogs")
    # Routed as the model id it is, not as the logs it spells.
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert http.get("/v1%2Fmodels/x").status_code == 400
