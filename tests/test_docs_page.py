"""GET /docs: Swagger UI renders in a real browser with nothing fetched from outside the service, lists
every operation, and its Authorize dialog works with an access key."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.conftest import SECRET, LiveServer
from tests.fake_upstream import FakeUpstream

ACCESS_KEY = "ak-docs-access-key-0123456789"


@pytest.fixture(scope="module")
def keyed_server(fake_upstream: FakeUpstream) -> Iterator[str]:
    server = LiveServer(
        {"LLM_BASE_URL": fake_upstream.url, "LLM_API_KEY": SECRET, "BACKEND_API_KEYS": ACCESS_KEY}
    )
    yield server.url
    server.stop()


def open_docs(browser: Browser, base: str) -> tuple[Page, list[str]]:
    """/docs in a fresh context; every request that leaves the service is refused and recorded."""
    page = browser.new_page()
    outside: list[str] = []
    service = urlparse(base).netloc

    def only_the_service(route: Route) -> None:
        if urlparse(route.request.url).netloc == service:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_service)
    page.goto(f"{base}/docs")
    return page, outside


def test_it_renders_every_operation_offline(browser: Browser, live_server_url: str) -> None:
    operations = httpx.get(f"{live_server_url}/openapi.json").json()["paths"]
    expected = sum(len(methods) for methods in operations.values())
    assert expected >= 30
    page, outside = open_docs(browser, live_server_url)
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock")).to_have_count(expected)
    expect(page.locator(".opblock-summary-path[data-path='/chat/message']")).to_have_count(1)
    assert outside == []
    page.close()


def test_it_serves_the_files_with_hashed_names_and_long_lifetimes(live_server_url: str) -> None:
    html = httpx.get(f"{live_server_url}/docs").text
    bundle = next(part.split('"')[1] for part in html.split("<script") if "swagger-ui-bundle" in part)
    assert bundle.startswith("/static/ninja/swagger-ui-bundle.") and bundle.endswith(".js")
    response = httpx.get(f"{live_server_url}{bundle}")
    assert response.status_code == 200
    assert "immutable" in response.headers["cache-control"]
    assert "max-age=315360000" in response.headers["cache-control"]


def test_it_authorizes_with_an_access_key(browser: Browser, keyed_server: str) -> None:
    assert httpx.get(f"{keyed_server}/chat/conversations").status_code == 401
    page, outside = open_docs(browser, keyed_server)
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.locator("#auth-bearer-value").fill(ACCESS_KEY)
    dialog.get_by_role("button", name="Apply credentials").first.click()
    expect(dialog.locator("button", has_text="Logout").first).to_be_visible()
    dialog.locator("button.btn-done").first.click()
    operation = page.locator("#operations-chat-chat_api_chat_conversations")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".responses-table.live-responses-table .response .response-col_status")
    expect(status.first).to_have_text("200")
    assert outside == []
    page.close()
