"""The chat page renders replies as Markdown, safely and smoothly as they stream, with Copy on code,
Regenerate and Edit, titles, export, and a drawer on small screens (Debian's chromium)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import ROOT
from tests.fake_upstream import FakeUpstream, Reply
from tests.test_webui import as_page, conversation_id, last_reply, new_page, open_ui, send

# The README's screenshots are retaken into docs/ with UPDATE_SCREENSHOTS=1; otherwise into
# test-artifacts/, so a test run leaves the checkout as it was.
DOCS = ROOT / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "test-artifacts")
VENDOR = ROOT / "webui" / "static" / "webui" / "vendor"
VENDORED = {
    "markdown-it.umd.min.js": "391f2aa638e75e6c7859d0a5c5650ef0956722a45998f17e05b83bc655778e1e",
    "purify.min.js": "8053ee2a6a09f9d50f7fcd6fb7f07072f52c7f3fa9aa12147cab4feaf65ee970",
}

RICH = """# Trip plan

Pack **light** and read the [guide](https://example.org/guide).

- Day one
  - Museum
  - Park
- Day two

| city | nights |
| --- | --- |
| Oslo | 2 |

Use `ls -la` to list, or run:

```python
def add(a, b):
    return a + b
```
"""

PROBE = """Probe <img src=x onerror="window.pwned=1"> and <script>window.pwned=2</script>

[click me](javascript:window.pwned=3) and [data](data:text/html,<b>x</b>)

<a href="#" onclick="window.pwned=4">a link</a> <style>body { display: none }</style>

![remote image](https://example.org/x.png)
"""


@pytest.fixture
def desk(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    page, problems = new_page(browser, viewport={"width": 1280, "height": 860})
    yield page, problems
    page.context.close()


def reply_with(page: Page, fake_upstream: FakeUpstream, text: str, chunks: list[str] | None = None) -> None:
    fake_upstream.queue(Reply(content=text, chunks=chunks if chunks is not None else [text]))
    send(page, "Plan my trip")
    expect(last_reply(page)).to_have_attribute("data-state", "done")


def test_it_vendors_the_libraries_as_published() -> None:
    for name, digest in VENDORED.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    licences = sorted(p.name for p in (VENDOR / "licenses").iterdir())
    assert "markdown-it.LICENSE" in licences and "dompurify.LICENSE" in licences and len(licences) == 7


def test_it_renders_markdown_and_streams_to_the_same_result(
    desk: tuple[Page, list[str]], live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    page, problems = desk
    open_ui(page, live_server_url)
    pieces = [RICH[i : i + max(1, len(RICH) // 40)] for i in range(0, len(RICH), max(1, len(RICH) // 40))]
    assert len(pieces) >= 40
    reply_with(page, fake_upstream, RICH, pieces)
    body = last_reply(page).locator(".body")
    expect(body.locator("h1")).to_have_text("Trip plan")
    expect(body.locator("strong")).to_have_text("light")
    expect(body.locator("ul > li > ul > li")).to_have_text(["Museum", "Park"])
    expect(body.locator("table td")).to_have_text(["Oslo", "2"])
    link = body.locator("a")
    expect(link).to_have_attribute("href", "https://example.org/guide")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(body.locator("p > code")).to_have_text("ls -la")
    expect(body.locator(".code-bar .lang")).to_have_text("python")
    streamed = body.inner_html()
    page.reload()  # the same conversation, rendered at once from what was stored
    expect(page.locator('#messages article[data-role="assistant"]')).to_have_count(1)
    assert last_reply(page).locator(".body").inner_html() == streamed
    assert page.evaluate("window.renderCosts")  # every render is timed (figures: the long-reply test)
    assert problems == []


def test_it_renders_a_long_reply_smoothly(
    desk: tuple[Page, list[str]], live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    page, problems = desk
    open_ui(page, live_server_url)
    paragraph = "Some **bold** words and `code` in a sentence that goes on for a while. " * 4
    text = "\n\n".join(f"## Part {n}\n\n{paragraph}" for n in range(60))  # about 20,000 characters
    pieces = [text[i : i + 50] for i in range(0, len(text), 50)]
    fake_upstream.queue(Reply(content=text, chunks=pieces, chunk_delay=0.002))
    page.evaluate("window.renderCosts = []")
    send(page, "Write a lot")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    costs: list[float] = page.evaluate("window.renderCosts")
    assert len(pieces) > 300 and 1 <= len(costs) < len(pieces)  # at most one render a frame, not one a delta
    # Figures, not a timed assertion (this machine's load varies): `pytest -s` prints them.
    ordered = sorted(costs)
    print(
        f"long reply: {len(text)} chars in {len(pieces)} deltas, {len(costs)} renders, "
        f"median {ordered[len(ordered) // 2]:.1f} ms, max {ordered[-1]:.1f} ms"
    )
    expect(last_reply(page).locator(".body h2")).to_have_count(60)
    assert len(page.locator("#messages article").all()) == 2  # only this reply re-renders: nothing else
    assert problems == []


def test_it_renders_an_injection_probe_inert(
    desk: tuple[Page, list[str]], live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    page, problems = desk
    open_ui(page, live_server_url)
    reply_with(page, fake_upstream, PROBE)
    body = last_reply(page).locator(".body")
    for tag in ("img", "script", "style", "iframe"):
        expect(body.locator(tag)).to_have_count(0)
    assert page.evaluate("window.pwned") is None
    assert (
        body.evaluate(
            "b => [...b.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
            ".filter(n => n.startsWith('on') || n === 'style')"
        )
        == []
    )
    hrefs = body.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(h is None or h.startswith("https://") for h in hrefs), hrefs
    expect(body).to_contain_text('<img src=x onerror="window.pwned=1">')  # shown as text
    expect(page.locator("body")).to_be_visible()
    page.locator(".code-bar").count()  # the page still works
    assert problems == []  # no script error and no Content-Security-Policy violation


def test_it_copies_a_code_block_exactly(
    browser: Browser, live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    page, problems = new_page(browser, permissions=["clipboard-read", "clipboard-write"])
    try:
        open_ui(page, live_server_url)
        reply_with(page, fake_upstream, RICH)
        copy = last_reply(page).get_by_role("button", name="Copy the python code")
        copy.focus()
        page.keyboard.press("Enter")  # reachable and usable by keyboard
        expect(copy).to_have_text("Copied")
        expect(page.get_by_role("status")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == "def add(a, b):\n    return a + b"
        assert problems == []
    finally:
        page.context.close()


def test_it_regenerates_and_edits_the_last_turn_in_place(
    desk: tuple[Page, list[str]], live_server_url: str, fake_upstream: FakeUpstream, http: httpx.Client
) -> None:
    page, problems = desk
    open_ui(page, live_server_url)
    send(page, "First question")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    send(page, "Secnod question")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    ident = conversation_id(page)

    fake_upstream.queue(Reply(content="A regenerated answer"))
    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(last_reply(page).locator(".body")).to_have_text("A regenerated answer")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    stored = http.get(f"/chat/conversations/{ident}", headers=as_page(page)).json()["conversation"]
    assert [m["content"] for m in stored["messages"]] == [
        "First question",
        "Fake reply to: First question",
        "Secnod question",
        "A regenerated answer",
    ]

    page.get_by_role("button", name="Edit your last message").click()
    box = page.get_by_label("Message", exact=True)
    expect(box).to_have_value("Secnod question")
    box.fill("Second question")
    box.press("Enter")
    expect(last_reply(page).locator(".body")).to_have_text("Fake reply to: Second question")
    expect(page.locator("#messages article")).to_have_count(4)
    stored = http.get(f"/chat/conversations/{ident}", headers=as_page(page)).json()["conversation"]
    assert [m["content"] for m in stored["messages"]][2:] == [
        "Second question",
        "Fake reply to: Second question",
    ]
    assert stored["message_count"] == 4 and stored["title"] == "First question"
    item = page.locator(f'#conversations li[data-id="{ident}"] .title')
    expect(item).to_have_text("First question")  # the title is the first thing asked
    assert problems == []


def test_it_exports_markdown_and_json(
    desk: tuple[Page, list[str]], live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    page, problems = desk
    open_ui(page, live_server_url)
    expect(page.get_by_role("button", name="Export as Markdown")).to_be_disabled()
    reply_with(page, fake_upstream, RICH)
    ident = conversation_id(page)
    with page.expect_download() as markdown:
        page.get_by_role("button", name="Export as Markdown").click()
    assert markdown.value.suggested_filename == f"conversation-{ident}.md"
    text = Path(markdown.value.path()).read_text()
    assert text.startswith("# Plan my trip\n") and "## You, " in text and RICH.strip() in text
    with page.expect_download() as exported:
        page.get_by_role("button", name="JSON export").click()
    data = json.loads(Path(exported.value.path()).read_text())
    assert data["conversation"]["id"] == ident
    assert [m["content"] for m in data["conversation"]["messages"]] == ["Plan my trip", RICH]
    assert problems == []


def test_it_fits_a_phone_with_a_drawer_and_asks_for_no_missing_icon(
    browser: Browser, live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    phone, problems = new_page(
        browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    missing: list[str] = []
    phone.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    try:
        open_ui(phone, live_server_url)
        picker = phone.get_by_label("Model", exact=True)
        box = picker.bounding_box()
        assert box is not None and box["width"] >= 300
        shown = picker.evaluate("s => s.options[s.selectedIndex].text")
        width = picker.evaluate(
            "s => { const c = document.createElement('canvas').getContext('2d');"
            " c.font = getComputedStyle(s).font;"
            " return c.measureText(s.options[s.selectedIndex].text).width; }"
        )
        assert shown == "openai/gpt-4o-mini" and width < box["width"] - 40  # shown whole
        reply_with(phone, fake_upstream, RICH)
        side = phone.locator("#side")
        expect(side).to_be_hidden()
        opener = phone.get_by_role("button", name="Show list")
        opener.click()
        expect(opener).to_have_attribute("aria-expanded", "true")
        expect(side).to_be_visible()
        expect(phone.locator("#conversations button.open").first).to_be_focused()
        phone.keyboard.press("Escape")
        expect(side).to_be_hidden()
        expect(opener).to_be_focused()
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        DOCS.mkdir(parents=True, exist_ok=True)
        phone.screenshot(path=str(DOCS / "ui-phone.png"))
        opener.click()
        phone.wait_for_timeout(400)  # the drawer's slide
        phone.screenshot(path=str(DOCS / "ui-phone-drawer.png"))
        assert missing == [] and problems == []
    finally:
        phone.context.close()


def test_it_keeps_a_failed_reply_in_view(
    desk: tuple[Page, list[str]], live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    page, problems = desk
    open_ui(page, live_server_url)
    for n in range(4):
        fake_upstream.queue(Reply(content=RICH))
        send(page, f"Question {n}")
        expect(last_reply(page)).to_have_attribute("data-state", "done")
    fake_upstream.queue(Reply(chunks=["partial ", "answer"], stream_error_after=1))
    send(page, "This one fails")
    expect(last_reply(page)).to_have_attribute("data-state", "failed")
    expect(page.get_by_role("alert")).to_be_visible()
    box = last_reply(page).bounding_box()
    log = page.locator("#messages").bounding_box()
    assert box is not None and log is not None
    assert box["y"] + box["height"] <= log["y"] + log["height"] + 1  # not hidden under the banner
    assert problems == []


def test_it_takes_the_desktop_screenshot(
    desk: tuple[Page, list[str]], live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    page, problems = desk
    open_ui(page, live_server_url)
    reply_with(page, fake_upstream, RICH)
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / "ui.png"))
    assert (DOCS / "ui.png").stat().st_size > 10_000 and problems == []
