"""GET /ui, the chat page: driven in a real browser (Debian's chromium) against the live server."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Route, expect

from tests.conftest import ROOT, SECRET, LiveServer
from tests.fake_upstream import FakeUpstream, Reply, error_body

ARTIFACTS = ROOT / "test-artifacts"
ACCESS_KEY = "ak-webui-access-key-0123456789"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

# Records every change of the newest reply: (milliseconds, data-state, text).
WATCH_REPLY = """() => {
  window.replySteps = [];
  const log = document.getElementById("messages");
  new MutationObserver(() => {
    const replies = log.querySelectorAll('article[data-role="assistant"]');
    const reply = replies[replies.length - 1];
    if (!reply) return;
    const text = reply.querySelector(".body").textContent;
    const last = window.replySteps[window.replySteps.length - 1];
    if (!last || last[1] !== reply.dataset.state || last[2] !== text) {
      window.replySteps.push([performance.now(), reply.dataset.state, text]);
    }
  }).observe(log, { subtree: true, childList: true, characterData: true, attributes: true });
}"""

UNLABELLED_CONTROLS = """() => [...document.querySelectorAll("button, select, textarea, input, a[href]")]
  .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute("aria-label") && !c.textContent.trim())
  .map((c) => c.outerHTML)"""


# ---- without a browser ---------------------------------------------------------------------


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html", "text/html, */*"])
def test_it_redirects_browsers_from_the_root_to_the_page(http: httpx.Client, accept: str) -> None:
    response = http.get("/", headers={"Accept": accept}, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/ui"
    assert "Accept" in response.headers["vary"]


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/html;q=0.9"])
def test_it_keeps_the_json_index_for_every_other_client(http: httpx.Client, accept: str | None) -> None:
    if accept is None:
        http.headers.pop("Accept", None)  # no Accept header at all
    else:
        http.headers["Accept"] = accept
    response = http.get("/", follow_redirects=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "Accept" in response.headers["vary"]
    assert "POST /chat/message" in response.json()["endpoints"]


def test_it_serves_a_page_that_loads_nothing_from_elsewhere(http: httpx.Client) -> None:
    response = http.get("/ui")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None
    page = response.text
    # The <style>, the page's own <script>, and the two vendored libraries (served by this service).
    assert page.count(f'nonce="{nonce.group(1)}"') == 4
    scripts = re.findall(r'<script nonce="[^"]+" src="([^"]+)"', page)
    assert len(scripts) == 2 and all(
        re.fullmatch(r"/static/webui/vendor/[\w.-]+\.[0-9a-f]{12}\.js", s) for s in scripts
    )
    for script in scripts:
        served = http.get(script)
        assert served.status_code == 200 and "immutable" in served.headers["cache-control"]
    assert '<link rel="stylesheet"' not in page
    assert re.findall(r"(?:src|href|action)=\"(?!/|#|data:)[^\"]*\"", page) == []
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page
    assert http.get("/ui").headers["content-security-policy"] != policy  # a fresh nonce each time


def test_it_answers_other_methods_on_the_page_with_the_error_shape(http: httpx.Client) -> None:
    response = http.post("/ui", json={})
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, HEAD"


# ---- in the browser ------------------------------------------------------------------------


def new_page(browser: Browser, **options: Any) -> tuple[Page, list[str]]:
    """A page in a fresh context (empty localStorage), and the list its script errors go to."""
    context = browser.new_context(**options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    return page, problems


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened, problems = new_page(browser, viewport={"width": 1100, "height": 760})
    yield opened
    opened.context.close()
    assert problems == []


def open_ui(page: Page, base: str) -> Page:
    page.goto(f"{base}/ui")
    expect(page.locator("#model option[value='fake/alpha']")).to_be_attached()
    return page


def last_reply(page: Page) -> Locator:
    return page.locator('#messages article[data-role="assistant"]').last


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def conversation_id(page: Page) -> str:
    value = page.locator("#chat").get_attribute("data-conversation-id")
    assert value
    return value


def client_token(page: Page) -> str:
    token = page.evaluate("() => window.localStorage.getItem('llm-gateway.client-token')")
    assert isinstance(token, str) and len(token) >= 32
    return token


def as_page(page: Page) -> dict[str, str]:
    """Headers that make a request the page's own: its browser's client token."""
    return {"X-Client-Token": client_token(page)}


def wait_until(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_it_streams_the_reply_into_the_page_as_it_arrives(
    page: Page, live_server_url: str, fake_upstream: FakeUpstream, http: httpx.Client
) -> None:
    http.post("/chat/message", json={"message": "What is a server-sent event?", "model": "fake/alpha"})
    chunks = [
        "Here is ",
        "a function:\n\n```python\ndef add(a: int, b: int) -> int:\n",
        "    return a + b\n```\n\n",
        "Call it with two numbers.",
    ]
    fake_upstream.queue(Reply(chunks=chunks, chunk_delay=0.4))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_ui(page, live_server_url)
    page.evaluate(WATCH_REPLY)

    box = page.get_by_label("Message", exact=True)
    box.click()
    page.keyboard.type("Show me an add function")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("in Python, please.")
    expect(box).to_have_value("Show me an add function\nin Python, please.")
    page.keyboard.press("Enter")

    reply = last_reply(page)
    expect(reply).to_have_attribute("data-state", "done")
    expect(reply.locator(".body > p")).to_have_text(["Here is a function:", "Call it with two numbers."])
    final = reply.locator(".body").text_content() or ""

    steps: list[list[Any]] = page.evaluate("window.replySteps")
    growing = [text for _, state, text in steps if state == "streaming" and text]
    assert len(growing) >= 2, steps  # the reply grew in at least two steps before it completed
    assert growing[0].startswith("Here is") and len(growing[0]) < len(final)
    assert len(set(growing)) == len(growing)
    first_text_at = next(at for at, state, text in steps if state == "streaming" and text)
    done_at = next(at for at, state, _ in steps if state == "done")
    assert done_at - first_text_at > 800  # three 0.4 s pauses: the first words came well before the end

    code = reply.locator("pre code")
    assert code.text_content() == "def add(a: int, b: int) -> int:\n    return a + b\n"
    expect(reply.locator(".code-bar .lang")).to_have_text("python")
    user = page.locator('#messages article[data-role="user"]').last
    expect(user.locator(".body")).to_have_text("Show me an add function\nin Python, please.")
    expect(box).to_have_value("")
    expect(page.get_by_role("status")).to_have_text("Reply complete.")

    sent = fake_upstream.completions()[-1].body
    assert sent["stream"] is True
    assert sent["messages"][-1] == {"role": "user", "content": "Show me an add function\nin Python, please."}
    stored = http.get(f"/chat/conversations/{conversation_id(page)}", headers=as_page(page)).json()[
        "conversation"
    ]
    assert stored["messages"][0]["content"] == "Show me an add function\nin Python, please."
    assert stored["messages"][1]["content"] == "".join(chunks)

    assert requested, "the page made no request"
    assert all(url.startswith(live_server_url + "/") or url.startswith("data:") for url in requested)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui.png"))


def test_it_finds_the_conversation_in_the_list_after_a_reload(
    page: Page, live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    open_ui(page, live_server_url)
    send(page, "Remember the word teapot.")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    expect(last_reply(page).locator(".body")).to_have_text("Fake reply to: Remember the word teapot.")
    ident = conversation_id(page)

    assert page.url.endswith(f"#c={ident}")  # the URL names the open conversation
    page.reload()
    expect(page.locator("#model option[value='fake/alpha']")).to_be_attached()
    item = page.locator(f'#conversations li[data-id="{ident}"]')
    expect(item).to_be_visible()
    expect(item.locator(".title")).to_have_text("Remember the word teapot.")  # titled by the question
    expect(item).to_contain_text("2 messages")
    expect(item.locator("button.open")).to_have_attribute("aria-current", "true")  # still open after reload

    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#messages article")).to_have_count(0)
    page.go_back()  # back returns to it
    expect(page.locator("#messages article")).to_have_count(2)
    page.get_by_role("button", name="New conversation").click()
    item.locator("button.open").click()
    expect(item.locator("button.open")).to_have_attribute("aria-current", "true")
    expect(page.locator("#messages article .body")).to_have_text(
        ["Remember the word teapot.", "Fake reply to: Remember the word teapot."]
    )
    expect(page.locator("#chat-title")).to_have_text("Remember the word teapot.")

    send(page, "Which word?")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    assert conversation_id(page) == ident
    assert len(fake_upstream.completions()[-1].body["messages"]) == 4  # system, the earlier turn, the new one
    expect(item).to_contain_text("4 messages")


def test_it_stops_a_reply_and_stores_nothing(
    page: Page, live_server_url: str, fake_upstream: FakeUpstream, http: httpx.Client
) -> None:
    fake_upstream.queue(Reply(chunks=[f"word{n} " for n in range(40)], chunk_delay=0.25))
    open_ui(page, live_server_url)
    send(page, "Tell me a very long story.")
    reply = last_reply(page)
    expect(reply).to_contain_text("word1")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_enabled()
    stop.click()

    expect(reply).to_have_attribute("data-state", "stopped")
    expect(page.get_by_role("status")).to_have_text("Stopped. Nothing was saved.")
    expect(stop).to_be_disabled()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_label("Message", exact=True)).to_have_value("Tell me a very long story.")
    assert wait_until(lambda: fake_upstream.disconnects == 1), "the server did not cancel the upstream call"
    assert "word39" not in (reply.text_content() or "")

    ident = conversation_id(page)
    missing = http.get(f"/chat/conversations/{ident}", headers=as_page(page))
    assert missing.status_code == 404
    assert missing.json()["code"] == "conversation_not_found"
    listed = http.get("/chat/conversations", params={"limit": 500}).json()["conversations"]
    assert ident not in [c["id"] for c in listed]
    expect(page.locator(f'#conversations li[data-id="{ident}"]')).to_have_count(0)


def test_it_shows_upstream_errors_with_the_services_message(
    page: Page, live_server_url: str, fake_upstream: FakeUpstream, http: httpx.Client
) -> None:
    fake_upstream.queue(Reply(status=502, body=error_body(502, "x")))
    expected = http.post("/chat/message", json={"message": "q", "stream": True}).json()
    assert expected["code"] == "upstream_error"

    open_ui(page, live_server_url)
    fake_upstream.queue(Reply(status=502, body=error_body(502, "x")))
    send(page, "Will this fail?")
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_have_text(f"{expected['message']} (upstream_error)")
    expect(page.locator('#messages article[data-role="assistant"]')).to_have_count(0)
    expect(page.locator('#messages article[data-role="user"]')).to_contain_text("Not saved.")
    expect(page.get_by_label("Message", exact=True)).to_have_value("Will this fail?")
    assert http.get(f"/chat/conversations/{conversation_id(page)}", headers=as_page(page)).status_code == 404

    fake_upstream.queue(Reply(chunks=["par", "tial", "never"], stream_error_after=1))
    with http.stream("POST", "/chat/message", json={"message": "q", "stream": True}) as response:
        frames = [line for line in response.iter_lines() if line.startswith("data: ")]
    mid_stream = json.loads(frames[-1][6:])
    fake_upstream.queue(Reply(chunks=["par", "tial", "never"], stream_error_after=1))
    page.get_by_role("button", name="Send").click()
    expect(alert).to_have_text(f"{mid_stream['message']} ({mid_stream['code']})")
    expect(last_reply(page)).to_have_attribute("data-state", "failed")
    expect(last_reply(page).locator(".body")).to_have_text("par")
    assert http.get(f"/chat/conversations/{conversation_id(page)}", headers=as_page(page)).status_code == 404

    send(page, "And now?")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    expect(alert).to_be_hidden()


def test_it_fills_the_model_picker_from_the_service(
    page: Page, live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    open_ui(page, live_server_url)
    picker = page.get_by_label("Model", exact=True)
    values = picker.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert "fake/alpha" in values and "openai/gpt-4o-mini" in values
    expect(picker.locator("option[value='fake/alpha']")).to_have_text("Fake Alpha (fake/alpha)")
    expect(picker).to_have_value("openai/gpt-4o-mini")  # the server's default model

    picker.select_option("fake/alpha")
    send(page, "Which model are you?")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    assert fake_upstream.completions()[-1].body["model"] == "fake/alpha"
    expect(last_reply(page).locator(".who")).to_have_text("Assistant · fake/alpha")

    page.reload()
    open_ui(page, live_server_url)
    expect(page.get_by_label("Model", exact=True)).to_have_value("fake/alpha")  # kept in localStorage


def test_it_inserts_text_and_never_html(page: Page, live_server_url: str) -> None:
    markup = '<img src="/nowhere" onerror="window.injected = true"><b>bold</b> & <i>more</i>'
    open_ui(page, live_server_url)
    send(page, markup)
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-state", "done")
    expect(reply.locator(".body")).to_have_text(f"Fake reply to: {markup}")
    expect(page.locator('#messages article[data-role="user"] .body')).to_have_text(markup)
    page.reload()
    open_ui(page, live_server_url)
    expect(page.locator("#conversations")).to_contain_text("<b>bold</b>")
    page.locator("#conversations button.open").filter(has_text="<b>bold</b>").first.click()
    expect(page.locator("#messages article")).to_have_count(2)
    assert page.locator("#messages img, #messages b, #messages i, #conversations b").count() == 0
    assert page.evaluate("window.injected") is None


def test_it_opens_starts_and_deletes_conversations(
    page: Page, live_server_url: str, http: httpx.Client
) -> None:
    ident = f"ui-{uuid.uuid4().hex[:12]}"
    open_ui(page, live_server_url)
    mine = {"X-Client-Token": client_token(page)}
    created = http.post(
        "/chat/message", json={"message": "A stored question", "conversation_id": ident}, headers=mine
    )
    assert created.status_code == 200
    page.reload()
    open_ui(page, live_server_url)
    item = page.locator(f'#conversations li[data-id="{ident}"]')
    item.locator("button.open").click()
    expect(page.locator("#messages article .body")).to_have_text(
        ["A stored question", "Fake reply to: A stored question"]
    )
    assert conversation_id(page) == ident

    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#messages article")).to_have_count(0)
    expect(page.locator("#chat-title")).to_have_text("New conversation")
    assert conversation_id(page) != ident
    expect(page.get_by_label("Message", exact=True)).to_be_focused()

    item.locator("button.open").click()
    expect(page.locator("#messages article")).to_have_count(2)
    page.once("dialog", lambda dialog: dialog.accept())
    item.get_by_role("button", name="Delete conversation: A stored question").click()
    expect(item).to_have_count(0)
    expect(page.get_by_role("status")).to_have_text("Conversation deleted.")
    expect(page.locator("#messages article")).to_have_count(0)
    assert conversation_id(page) != ident
    assert http.get(f"/chat/conversations/{ident}", headers=mine).status_code == 404


def test_it_shows_each_browser_only_its_own_conversations(
    browser: Browser, live_server_url: str, http: httpx.Client
) -> None:
    first, first_problems = new_page(browser)
    second, second_problems = new_page(browser)
    open_ui(first, live_server_url)
    send(first, "My private medical question")
    expect(last_reply(first)).to_have_attribute("data-state", "done")
    ident = conversation_id(first)
    expect(first.locator(f'#conversations li[data-id="{ident}"]')).to_be_visible()

    open_ui(second, live_server_url)
    expect(second.locator("#conversations-empty")).to_be_visible()
    expect(second.locator("#conversations li")).to_have_count(0)
    assert client_token(first) != client_token(second)
    # Asked for by id, with the second browser's own token, it does not exist.
    status = second.evaluate(
        """async (id) => (await fetch(`/chat/conversations/${id}`, {headers: {
             "X-Client-Token": localStorage.getItem("llm-gateway.client-token")}})).status""",
        ident,
    )
    assert status == 404
    assert http.get(f"/chat/conversations/{ident}").status_code == 404  # nor for a caller with no token
    send(second, "Something else entirely")
    expect(last_reply(second)).to_have_attribute("data-state", "done")
    expect(second.locator("#conversations li")).to_have_count(1)

    first.reload()
    open_ui(first, live_server_url)
    expect(first.locator(f'#conversations li[data-id="{ident}"]')).to_be_visible()
    expect(first.locator("#conversations li")).to_have_count(1)
    assert first_problems == [] and second_problems == []
    first.context.close()
    second.context.close()


@pytest.fixture(scope="module")
def keyed_server_url(fake_upstream: FakeUpstream) -> Iterator[str]:
    """A second live server, this one with access keys (BACKEND_API_KEYS)."""
    server = LiveServer(
        {
            "LLM_BASE_URL": fake_upstream.url,
            "LLM_API_KEY": SECRET,
            "LLM_MAX_RETRIES": "0",
            "RATE_LIMIT": "100000/minute",
            "BACKEND_API_KEYS": ACCESS_KEY,
        }
    )
    yield server.url
    server.stop()


def test_it_asks_for_an_access_key_and_sends_it_as_a_bearer_token(
    page: Page, keyed_server_url: str, fake_upstream: FakeUpstream
) -> None:
    refusal = httpx.get(f"{keyed_server_url}/chat/models").json()
    assert refusal["code"] == "unauthorized"
    page.goto(f"{keyed_server_url}/ui")
    dialog = page.get_by_role("dialog", name="Access key")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#key-reason")).to_have_text(refusal["message"])
    key = dialog.get_by_label("Access key")
    expect(key).to_be_focused()
    key.fill("ak-wrong-key-0000000000")
    key.press("Enter")

    expect(dialog).to_be_visible()
    expect(dialog.locator("#key-reason")).to_have_text(
        f"The access key was not accepted. {refusal['message']}"
    )
    expect(key).to_have_value("")
    assert page.evaluate("localStorage.getItem('llm-gateway.access-key')") is None
    key.fill(ACCESS_KEY)
    dialog.get_by_role("button", name="Save key").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#model option[value='fake/alpha']")).to_be_attached()
    assert page.evaluate("localStorage.getItem('llm-gateway.access-key')") == ACCESS_KEY

    send(page, "Hello with a key")
    expect(last_reply(page)).to_have_attribute("data-state", "done")
    assert fake_upstream.completions()[-1].body["messages"][-1]["content"] == "Hello with a key"
    assert ACCESS_KEY not in json.dumps(fake_upstream.completions()[-1].headers)  # never sent upstream

    sent: list[str | None] = []
    page.on("request", lambda request: sent.append(request.headers.get("authorization")))
    page.reload()
    expect(page.locator("#conversations li").first).to_be_attached()
    expect(page.locator("#model option[value='fake/alpha']")).to_be_attached()
    expect(dialog).to_be_hidden()  # asked once: the key is kept
    assert f"Bearer {ACCESS_KEY}" in sent
    expect(page.get_by_role("button", name="Access key")).to_be_visible()


def test_it_shows_a_missing_upstream_key_as_an_error_not_as_an_access_key_question(
    page: Page, live_server_url: str
) -> None:
    upstream_key = {
        "status": "error",
        "code": "api_key_required",
        "message": "An API key is required: set LLM_API_KEY on the server or send api_key in the request.",
        "timestamp": "t",
    }
    page.route(
        "**/chat/message",
        lambda route: route.fulfill(
            status=401, content_type="application/json", body=json.dumps(upstream_key)
        ),
    )
    open_ui(page, live_server_url)
    send(page, "No upstream key")
    expect(page.get_by_role("alert")).to_have_text(f"{upstream_key['message']} (api_key_required)")
    expect(page.get_by_role("dialog", name="Access key")).to_be_hidden()


SPACE_APP = "https://someone-gateway.hf.space"


def framing_page(browser: Browser, parent: str, child: str, live: str) -> tuple[Page, list[str]]:
    """A page at `parent` that frames `child`, as a Space does. The live server answers for SPACE_APP:
    a page on the internet may not frame a loopback address."""
    page, problems = new_page(browser)
    frame = f'<iframe title="app" src="{child}" width="900" height="600"></iframe>'
    page.route(parent, lambda route: route.fulfill(content_type="text/html", body=frame))

    def proxy(route: Route) -> None:
        route.fulfill(response=route.fetch(url=live + route.request.url.removeprefix(SPACE_APP)))

    page.route(f"{SPACE_APP}/**", proxy)
    page.goto(parent)
    return page, problems


def test_it_shows_inside_a_huggingface_space_and_nowhere_else(browser: Browser, live_server_url: str) -> None:
    space, problems = framing_page(
        browser, "https://huggingface.co/spaces/someone/gateway", f"{SPACE_APP}/ui", live_server_url
    )
    try:
        app = space.frame_locator("iframe")
        expect(app.locator("#model option[value='fake/alpha']")).to_be_attached()
        expect(app.get_by_label("Message", exact=True)).to_be_visible()
        assert problems == []
    finally:
        space.context.close()

    # A Space frames the root: the browser is sent on to /ui, inside the frame.
    same, problems = framing_page(browser, f"{live_server_url}/framed", "/", live_server_url)
    try:
        expect(same.frame_locator("iframe").get_by_label("Message", exact=True)).to_be_visible()
        assert same.frames[1].url == f"{live_server_url}/ui"
        assert problems == []
    finally:
        same.context.close()

    other, problems = framing_page(browser, "https://elsewhere.example/", f"{SPACE_APP}/ui", live_server_url)
    try:
        assert wait_until(lambda: any("frame-ancestors" in problem for problem in problems)), problems
        expect(other.frame_locator("iframe").locator("#model")).to_have_count(0)
    finally:
        other.context.close()


def test_it_works_by_keyboard_on_a_phone_sized_screen(
    browser: Browser, live_server_url: str, fake_upstream: FakeUpstream
) -> None:
    phone, problems = new_page(
        browser, viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True
    )
    try:
        open_ui(phone, live_server_url)
        assert phone.evaluate(UNLABELLED_CONTROLS) == []
        for label in ("Model", "Message"):
            expect(phone.get_by_label(label, exact=True)).to_be_visible()
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375
        for control in ("#message", "#send", "#stop"):
            box = phone.locator(control).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
            assert box["y"] + box["height"] <= 667

        for _ in range(40):  # Tab from the top of the page to the message box
            phone.keyboard.press("Tab")
            if phone.evaluate("document.activeElement.id") == "message":
                break
        else:
            pytest.fail("Tab never reached the message box")
        phone.keyboard.type("Typed with the keyboard only")
        phone.keyboard.press("Enter")
        expect(last_reply(phone)).to_have_attribute("data-state", "done")

        fake_upstream.queue(Reply(chunks=[f"slow{n} " for n in range(30)], chunk_delay=0.25))
        phone.keyboard.type("And stop with Escape")
        phone.keyboard.press("Enter")
        expect(last_reply(phone)).to_contain_text("slow1")
        phone.keyboard.press("Escape")
        expect(last_reply(phone)).to_have_attribute("data-state", "stopped")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375
        ARTIFACTS.mkdir(exist_ok=True)
        phone.screenshot(path=str(ARTIFACTS / "ui-phone.png"))

        expect(phone.locator("#conversations")).to_be_hidden()  # folded away on a narrow screen
        phone.get_by_role("button", name="Show list").click()
        expect(phone.get_by_role("button", name="Hide list")).to_have_attribute("aria-expanded", "true")
        first = phone.locator("#conversations button.open").first
        expect(first).to_be_visible()
        first.click()
        expect(phone.locator("#conversations")).to_be_hidden()
        expect(phone.locator("#messages article").first).to_be_visible()
    finally:
        phone.context.close()
    assert problems == []


def test_it_shows_function_calls_made_through_the_responses_api(
    page: Page, live_server_url: str, http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    open_ui(page, live_server_url)
    mine = as_page(page)
    conversation = http.post("/v1/conversations", json={}, headers=mine).json()["id"]
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    call = {"id": "call_9", "name": "get_weather", "arguments": '{"city":"<b>Paris</b>","days":2}'}
    fake_upstream.queue(Reply(tool_calls=[call]), Reply(content="It is **sunny**."))
    for given in (
        "Weather in Paris?",
        [{"type": "function_call_output", "call_id": "call_9", "output": '{"sky":"clear"}'}],
    ):
        answered = http.post(
            "/v1/responses",
            json={"input": given, "conversation": conversation, "tools": [tool]},
            headers=mine,
        )
        assert answered.status_code == 200, answered.text
    page.goto(f"{live_server_url}/ui#c={conversation}")
    articles = page.locator("#messages article")
    expect(articles).to_have_count(4)
    assert [articles.nth(n).get_attribute("data-role") for n in range(4)] == [
        "user",
        "tool",
        "tool",
        "assistant",
    ]
    call_step, result_step = articles.nth(1), articles.nth(2)
    expect(call_step.locator(".who")).to_have_text("Function call · get_weather · call_9")
    assert call_step.locator("pre code").text_content() == '{\n  "city": "<b>Paris</b>",\n  "days": 2\n}'
    expect(call_step.locator("b")).to_have_count(0)  # text, never HTML
    expect(result_step.locator(".who")).to_have_text("Function result · call_9")
    assert result_step.locator("pre code").text_content() == '{\n  "sky": "clear"\n}'
    expect(articles.nth(3).locator(".body strong")).to_have_text("sunny")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-function-calls.png"))
