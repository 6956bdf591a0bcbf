"""The web chat page in a real browser (Debian's Chromium, driven by Playwright) against a real hearth.

Each test starts hearth on 127.0.0.1 with the scripted model server, opens the page at ``/`` and uses it as
a person would: sign in, send, watch the answer stream in, press buttons, attach files, reload. Screenshots
of a streamed reply (desktop and phone) are written to ``tests/artifacts/``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.web.page import CONTENT_SECURITY_POLICY
from tests.support.hearth import RunningHearth

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# never skipped: the Makefile installs Debian's chromium, and a missing browser fails these tests loudly
expect.set_options(timeout=10_000)  # generous on a busy machine; passing tests do not wait for it

# Records the page's WebSockets, so that a test can drop the connection as a network would.
TRACK_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__sockets.push(this); }
  };
})();
"""
# Records each text the last reply shows, as the page renders it.
WATCH_REPLY = """() => {
  window.__states = [];
  new MutationObserver(() => {
    const body = [...document.querySelectorAll("#messages .msg-assistant .body")].at(-1);
    const text = body ? body.textContent : "";
    if (text && window.__states.at(-1) !== text) window.__states.push(text);
  }).observe(document.getElementById("messages"), {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture
async def browser(hearth: RunningHearth) -> AsyncIterator[Browser]:
    """Chromium, closed before hearth stops (an open page would hold hearth's shutdown up)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, hearth: RunningHearth, *, viewport: dict[str, int] = DESKTOP,
                    dialogs: list[str] | None = None, track_sockets: bool = False, dark: bool = False) -> Page:
    context = await browser.new_context(viewport=viewport, color_scheme="dark" if dark else "light")  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    page = await context.new_page()
    if track_sockets:
        await page.add_init_script(TRACK_SOCKETS)

    async def on_dialog(dialog: object) -> None:
        if dialogs is not None:
            dialogs.append(getattr(dialog, "message", ""))
        await dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", on_dialog)
    await page.goto(hearth.http_url + "/")
    return page


async def sign_in(page: Page, key: str, *, remember: bool = False) -> None:
    await page.get_by_label("API key").fill(key)
    if remember:
        await page.get_by_label("Remember me on this device").check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#status")).to_have_text("")  # the WebSocket is authenticated


async def say(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    await box.fill(text)
    await box.press("Enter")


def replies(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#messages .msg-assistant")


async def wait_done(page: Page, count: int) -> None:
    """Until ``count`` replies are finished."""
    await expect(page.locator("#messages .msg-assistant:not(.streaming)")).to_have_count(count)


async def start_conversation_over_http(hearth: RunningHearth, text: str) -> str:
    async with httpx.AsyncClient(base_url=hearth.http_url, headers=hearth.auth()) as client:
        response = await client.post("/v1/chat/completions", json={
            "model": "hearth", "messages": [{"role": "user", "content": text}]})
    assert response.status_code == 200, response.text
    return response.headers["x-hearth-conversation"]


async def test_sign_in_refuses_a_wrong_key_and_shows_the_conversations(browser: Browser,
                                                                        hearth: RunningHearth) -> None:
    await start_conversation_over_http(hearth, "Plan the vegetable garden")
    page = await open_page(browser, hearth)
    await sign_in_expecting_error(page)
    await sign_in(page, hearth.admin_key)
    await expect(page.locator("#conversations")).to_contain_text("Plan the vegetable garden")
    await expect(page.locator("#user-name")).to_contain_text("admin")
    stored = await page.evaluate("[localStorage.getItem('hearth.apiKey'), sessionStorage.getItem('hearth.apiKey')]")
    assert stored == [None, hearth.admin_key]  # not remembered: gone with the tab
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    await sign_in(page, hearth.admin_key, remember=True)
    stored = await page.evaluate("[localStorage.getItem('hearth.apiKey'), sessionStorage.getItem('hearth.apiKey')]")
    assert stored == [hearth.admin_key, None]


async def sign_in_expecting_error(page: Page) -> None:
    await page.get_by_label("API key").fill("hth_wrong_wrong_wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    assert await page.locator("#app").is_hidden()


async def test_a_reply_streams_in_and_is_rendered(browser: Browser, hearth: RunningHearth,
                                                 sim: ModelSimulator) -> None:
    words = [f"word{i} " for i in range(16)]
    sim.script(Turn(tokens=["**Streaming** ", *words, "\n\n- one\n- two\n\n```\ncode()\n```"], gap=0.06))
    page = await open_page(browser, hearth)
    await sign_in(page, hearth.admin_key)
    await page.evaluate(WATCH_REPLY)
    box = page.get_by_label("Message", exact=True)
    await box.fill("line one")
    await box.press("Shift+Enter")
    await box.press_sequentially("line two")
    await box.press("Enter")
    await expect(page.locator("#messages .msg-user").first).to_have_text("line one\nline two")
    await expect(replies(page).last).to_contain_text("word3")  # seen growing from here as well as by the page
    await wait_done(page, 1)
    seen: list[str] = await page.evaluate("window.__states")
    intermediate = [s for s in seen if "code()" not in s]
    assert len(intermediate) >= 2, seen
    assert all(len(a) < len(b) for a, b in itertools.pairwise(seen)), seen  # it only grows
    assert seen[-1].startswith("Streaming word0") and seen[-1].endswith("code()")
    reply = replies(page).last
    await expect(reply.locator("strong")).to_have_text("Streaming")
    await expect(reply.locator("li")).to_have_text(["one", "two"])
    await expect(reply.locator("pre code")).to_have_text("code()")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "chat-desktop.png"))
    assert sim.requests[-1].last_user_text == "line one\nline two"


async def test_model_output_is_never_markup(browser: Browser, hearth: RunningHearth, sim: ModelSimulator) -> None:
    evil = ("Look <img src=x onerror=alert(1)> and <script>alert(2)</script> and [x](javascript:alert(3)) "
            "and [ok](https://example.com/a) and <b onmouseover=alert(4)>bold</b>")
    sim.script(Turn(tokens=[evil[:30], evil[30:]]))
    dialogs: list[str] = []
    page = await open_page(browser, hearth, dialogs=dialogs)
    await sign_in(page, hearth.admin_key)
    await say(page, "<img src=y onerror=alert(5)> please")
    await wait_done(page, 1)
    reply = replies(page).last
    await expect(reply).to_contain_text("<img src=x onerror=alert(1)>")
    await expect(reply).to_contain_text("<script>alert(2)</script>")
    await expect(reply).to_contain_text("[x](javascript:alert(3))")
    await expect(page.locator("#messages .msg-user")).to_contain_text("<img src=y onerror=alert(5)>")
    assert await page.locator("#messages img, #messages script, #messages b").count() == 0
    hrefs = await page.locator("#messages a").evaluate_all("links => links.map(a => [a.href, a.rel, a.target])")
    assert hrefs == [["https://example.com/a", "noopener noreferrer", "_blank"]]
    await reply.hover()
    await asyncio.sleep(0.3)
    assert dialogs == []


NEW_TAB = 'target="_blank" rel="noopener noreferrer"'
MARKDOWN = [
    ("# Title", "<h3>Title</h3>"),
    ("**b** and *i* and `<b>x</b>` and ~~s~~",
     "<p><strong>b</strong> and <em>i</em> and <code>&lt;b&gt;x&lt;/b&gt;</code> and <del>s</del></p>"),
    ("line1\nline2\n\nnext", "<p>line1<br>line2</p><p>next</p>"),
    ("> quoted\n> **more**", "<blockquote><p>quoted<br><strong>more</strong></p></blockquote>"),
    ("1. one\n2. two\n   - nested", "<ol><li>one</li><li>two<ul><li>nested</li></ul></li></ol>"),
    ("3. three", '<ol start="3"><li>three</li></ol>'),
    ("- a\n- b", "<ul><li>a</li><li>b</li></ul>"),
    ("```html\n<script>alert(1)</script>\n```", '<pre><code data-lang="html">&lt;script&gt;alert(1)&lt;/script&gt;'
                                               "</code></pre>"),
    ("---", "<hr>"),
    ("[a](https://x.org/p?q=1)", f'<p><a href="https://x.org/p?q=1" {NEW_TAB}>a</a></p>'),
    ("[m](mailto:a@b.example)", f'<p><a href="mailto:a@b.example" {NEW_TAB}>m</a></p>'),
    ("see https://example.com/x.", f'<p>see <a href="https://example.com/x" {NEW_TAB}>https://example.com/x</a>.</p>'),
    ("[j](JAVASCRIPT:alert(1))", "<p>[j](JAVASCRIPT:alert(1))</p>"),
    ("[d](data:text/html,<b>hi</b>)", "<p>[d](data:text/html,&lt;b&gt;hi&lt;/b&gt;)</p>"),
    ("[v](vbscript:msgbox)", "<p>[v](vbscript:msgbox)</p>"),
    ("[r](/v1/files)", "<p>[r](/v1/files)</p>"),
    ("<a href=javascript:alert(1)>x</a>", "<p>&lt;a href=javascript:alert(1)&gt;x&lt;/a&gt;</p>"),
    ("snake_case_name and \\*stars\\*", "<p>snake_case_name and *stars*</p>"),
]


async def test_markdown_is_built_from_elements_and_text(browser: Browser, hearth: RunningHearth) -> None:
    page = await open_page(browser, hearth)
    rendered = await page.evaluate("""async (sources) => {
        const { renderMarkdown } = await import("/chat/app.js");
        return sources.map((source) => {
            const box = document.createElement("div");
            box.append(renderMarkdown(source));
            return box.innerHTML;
        });
    }""", [source for source, _ in MARKDOWN])
    assert list(zip([source for source, _ in MARKDOWN], rendered, strict=True)) == MARKDOWN


async def test_a_confirmation_is_answered_with_its_button(browser: Browser, hearth: RunningHearth) -> None:
    page = await open_page(browser, hearth)
    await sign_in(page, hearth.admin_key)
    await say(page, "schedule a meeting tomorrow at 3pm for half an hour")
    await wait_done(page, 1)
    await expect(replies(page).last).to_contain_text("Shall I")
    await page.get_by_role("button", name="Yes").click()
    await wait_done(page, 2)
    await expect(replies(page).last).to_contain_text("Scheduled")
    await expect(page.locator("#messages .msg-user").last).to_have_text("Yes")
    assert await page.get_by_role("button", name="No", exact=True).is_disabled()
    async with httpx.AsyncClient(base_url=hearth.http_url, headers=hearth.auth()) as client:
        ics = (await client.get("/v1/calendar.ics")).text
    assert ics.count("BEGIN:VEVENT") == 1


async def test_files_are_uploaded_and_sent_with_the_message(browser: Browser, hearth: RunningHearth,
                                                            sim: ModelSimulator) -> None:
    page = await open_page(browser, hearth)
    await sign_in(page, hearth.admin_key)
    await page.locator("#file-input").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"The boiler was serviced in March.\n"}])
    chip = page.locator("#chips .chip")
    await expect(chip).to_have_text("notes.txt×")  # uploaded: no "uploading…" any more
    await say(page, "What does the file say?")
    await wait_done(page, 1)
    await expect(page.locator("#messages .msg-user .files")).to_contain_text("notes.txt")
    await expect(page.locator("#chips .chip")).to_have_count(0)
    prompt = sim.requests[-1].last_user_text
    assert prompt.startswith("What does the file say?\n[attached file 'notes.txt' (text/plain")
    # a second file, dropped on the page, goes into the conversation that now exists
    await page.evaluate("""() => {
        const data = new DataTransfer();
        data.items.add(new File(["Dropped text.\\n"], "dropped.txt", {type: "text/plain"}));
        document.getElementById("main").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true,
                                                                              cancelable: true}));
    }""")
    await expect(page.locator("#chips .chip")).to_have_text("dropped.txt×")
    conversation = page.url.rsplit("/", 1)[-1]
    async with httpx.AsyncClient(base_url=hearth.http_url, headers=hearth.auth()) as client:
        files = {f["filename"]: f for f in (await client.get("/v1/files")).json()["data"]}
        history = (await client.get(f"/v1/conversations/{conversation}/messages")).json()["data"]
    assert set(files) == {"notes.txt", "dropped.txt"}
    assert files["dropped.txt"]["conversation"] == conversation
    assert history[0]["text"] == "What does the file say?"
    assert history[0]["attachments"][0]["filename"] == "notes.txt"


async def test_history_reloads_and_notices_arrive_where_they_belong(browser: Browser, hearth: RunningHearth) -> None:
    page = await open_page(browser, hearth)
    await sign_in(page, hearth.admin_key)
    await say(page, "first conversation here")
    await wait_done(page, 1)
    first = page.url.rsplit("/", 1)[-1]
    await page.get_by_role("button", name="New conversation").click()
    await expect(page.locator("#messages .msg")).to_have_count(0)
    await say(page, "second conversation here")
    await wait_done(page, 1)
    second = page.url.rsplit("/", 1)[-1]
    assert first != second and len(first) == 32

    await page.reload()
    await expect(page.locator("#messages .msg-user .text")).to_have_text(["second conversation here"])
    await expect(page.locator("#conversations li")).to_have_count(2)
    await page.locator(f"#conversations button[data-id='{first}']").click()
    await expect(page.locator("#messages .msg-user .text")).to_have_text(["first conversation here"])
    await expect(page.locator("#messages .msg-assistant .body")).to_have_text(["You said: first conversation here"])
    await expect(page.locator("#conversation-title")).to_have_text("first conversation here")

    # a reminder for the conversation on screen shows in it; one for another marks that one unread
    await hearth.runtime.messenger.send(first, "Reminder: **water** the plants")
    await expect(page.locator("#messages .msg-notice .body")).to_have_text("Reminder: water the plants")
    await expect(page.locator("#messages .msg-notice strong")).to_have_text("water")
    await hearth.runtime.messenger.send(second, "Reminder: call Sam")
    await expect(page.locator(f"#conversations li.unread button[data-id='{second}']")).to_have_count(1)
    await expect(page.locator("#messages .msg-notice")).to_have_count(1)
    await page.locator(f"#conversations button[data-id='{second}']").click()
    await expect(page.locator("#messages .msg-notice .body")).to_have_text(["Reminder: call Sam"])

    # rename, then delete (which asks twice, in the page)
    await page.get_by_role("button", name="Rename").click()
    await page.get_by_label("Conversation title").fill("Sam things")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(f"#conversations button[data-id='{second}']")).to_contain_text("Sam things")
    await page.get_by_role("button", name="Delete").click()
    await page.get_by_role("button", name="Really delete?").click()
    await expect(page.locator("#conversations li")).to_have_count(1)
    assert await hearth.runtime.conversations.count_messages(second) == 0


async def test_a_dropped_connection_is_resumed_without_a_second_turn(browser: Browser, hearth: RunningHearth,
                                                                     sim: ModelSimulator) -> None:
    sim.script(Turn(tokens=[f"part{i} " for i in range(12)], gap=0.08))
    page = await open_page(browser, hearth, track_sockets=True)
    await sign_in(page, hearth.admin_key)
    await say(page, "tell me slowly")
    await expect(replies(page).last).to_contain_text("part2")
    await page.evaluate("window.__sockets.at(-1).close()")
    await expect(page.locator("#status")).to_contain_text("retrying")
    await wait_done(page, 1)
    await expect(replies(page).last).to_have_text("".join(f"part{i} " for i in range(12)).strip())
    assert await page.evaluate("window.__sockets.length") == 2
    assert len(sim.requests) == 1  # the resent message was recognised, not answered again
    conversation = page.url.rsplit("/", 1)[-1]
    assert await hearth.runtime.conversations.count_messages(conversation) == 2


async def test_a_phone_gets_a_drawer_and_no_sideways_scrolling(browser: Browser, hearth: RunningHearth,
                                                             sim: ModelSimulator) -> None:
    await start_conversation_over_http(hearth, "An older conversation")
    sim.script(Turn(tokens=["A long line: ", "x" * 300, " and code:\n\n```\n", "y" * 200, "\n```\n", "Done."],
                    gap=0.02))
    page = await open_page(browser, hearth, viewport=PHONE, dark=True)
    await sign_in(page, hearth.admin_key)
    sidebar = page.locator("#sidebar")
    await expect(sidebar).not_to_be_in_viewport()
    await say(page, "z" * 200)
    await wait_done(page, 1)
    sizes = await page.evaluate("""() => ({scroll: document.documentElement.scrollWidth, width: innerWidth,
        body: document.body.scrollWidth, log: document.getElementById('log').scrollWidth,
        logWidth: document.getElementById('log').clientWidth})""")
    assert sizes["scroll"] <= sizes["width"] and sizes["body"] <= sizes["width"], sizes
    assert sizes["log"] <= sizes["logWidth"], sizes
    composer = await page.get_by_label("Message", exact=True).bounding_box()
    send = await page.get_by_role("button", name="Send").bounding_box()
    assert composer is not None and send is not None
    assert composer["y"] + composer["height"] <= PHONE["height"] and send["x"] + send["width"] <= PHONE["width"]
    await expect(page.get_by_label("Message", exact=True)).to_be_in_viewport()
    await expect(page.locator("#conversation-title")).to_have_text("z" * 59 + "…")  # named after its first message
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "chat-phone.png"))
    await page.get_by_role("button", name="Show conversations").click()
    await expect(sidebar).to_be_in_viewport(ratio=1)
    await page.screenshot(path=str(ARTIFACTS / "chat-phone-drawer.png"))
    await page.locator("#conversations button", has_text="An older conversation").click()
    await expect(sidebar).not_to_be_in_viewport()
    await expect(page.locator("#messages .msg-user .text")).to_have_text(["An older conversation"])


async def test_the_page_is_served_with_a_strict_policy(browser: Browser, hearth: RunningHearth) -> None:
    page = await open_page(browser, hearth)
    response = await page.reload()
    assert response is not None
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    async with httpx.AsyncClient(base_url=hearth.http_url) as client:
        index = await client.get("/")
        script = await client.get("/chat/app.js")
        style = await client.get("/chat/app.css")
        again = await client.get("/chat/app.js", headers={"If-None-Match": script.headers["etag"]})
        missing = await client.get("/chat/../settings.py")
        unknown = await client.get("/chat/secret.txt")
        as_json = await client.get("/", headers={"Accept": "application/json"})
        api = await client.get("/api")
        ws_port = await client.get(hearth.ws_port_url.replace("ws://", "http://").removesuffix("/ws") + "/")
        admin_port = await client.get(hearth.admin_url + "/", headers=hearth.auth())
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    for response_ in (index, script, style):
        assert response_.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response_.headers["x-content-type-options"] == "nosniff"
        assert response_.headers["referrer-policy"] == "no-referrer"
        assert response_.headers["cache-control"] == "no-cache"
    assert again.status_code == 304
    assert missing.status_code == 404 and unknown.status_code == 404
    assert as_json.json()["name"] == "hearth" and api.json() == as_json.json()
    assert ws_port.status_code == 404 and admin_port.status_code in (403, 404)
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|eval\(", script.text)
