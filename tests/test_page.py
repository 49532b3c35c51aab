"""The chat page in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from conftest import ARTIFACTS, FakeProvider, Server

CHROMIUM = os.environ.get("STREAMCHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# Records every distinct text the newest assistant message shows, so the test can see the reply grow.
RECORD_RENDERS = """
window.__renders = [];
new MutationObserver(() => {
  const replies = document.querySelectorAll('.message.assistant .body');
  const last = replies[replies.length - 1];
  if (!last) return;
  const text = last.innerText;
  if (window.__renders[window.__renders.length - 1] !== text) window.__renders.push(text);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: ./scripts/test installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 750})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def send(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def test_a_reply_appears_progressively_in_the_page(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"word{i} " for i in range(25)]
    fake_provider.script(tokens=tokens, delay=0.04)
    page.add_init_script(RECORD_RENDERS)
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "Hello from the browser")
    page.wait_for_selector(".message.assistant.completed", timeout=20_000)
    expected = "".join(tokens).strip()
    assert page.inner_text(".message.assistant .body").strip() == expected
    assert page.inner_text(".message.user .body") == "Hello from the browser"
    renders = page.evaluate("window.__renders")
    partial = [text for text in renders if 0 < len(text.strip()) < len(expected)]
    assert len(partial) >= 5, f"expected several intermediate renders, saw {renders}"
    assert page.evaluate("location.hash").startswith("#"), "the open conversation is kept in the URL"
    shot(page, "chat-completed")


def test_markdown_renders_and_hostile_html_stays_inert(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    hostile = ("**bold** and `code`\n\n- one\n- two\n\n"
               "<script>window.pwned = 1</script>\n\n<img src=x onerror=\"window.pwned = 2\">\n\n"
               "[click me](javascript:window.pwned=3) and [docs](https://example.org/a?b=1&c=2)")
    fake_provider.script(tokens=[hostile])
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, '<img src=x onerror="window.pwned = 4"> user text is shown as text')
    page.wait_for_selector(".message.assistant.completed", timeout=20_000)
    reply = page.locator(".message.assistant .body")
    assert reply.locator("strong").inner_text() == "bold"
    assert reply.locator("code").inner_text() == "code"
    assert reply.locator("li").count() == 2
    assert page.locator(".message script, .message img").count() == 0
    links = reply.locator("a")
    assert links.count() == 1
    assert links.get_attribute("href") == "https://example.org/a?b=1&c=2"
    assert "click me" in reply.inner_text()
    assert page.evaluate("window.pwned") is None
    assert "<img" in page.inner_text(".message.user .body")
    shot(page, "chat-markdown-xss")


def test_switching_conversations(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    first, second = f"first-{uuid.uuid4().hex[:6]}", f"second-{uuid.uuid4().hex[:6]}"
    for cid, text in ((first, "about apples"), (second, "about pears")):
        httpx.post(f"{server.url}/chat", json={"message": text, "conversationId": cid}).raise_for_status()
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    page.click(f"#conversations li[data-id='{first}']")
    page.wait_for_selector(".message.user >> text=about apples")
    assert "about pears" not in page.inner_text("#messages")
    page.click(f"#conversations li[data-id='{second}']")
    page.wait_for_selector(".message.user >> text=about pears")
    assert "about apples" not in page.inner_text("#messages")
    assert page.locator("#conversations li.active").get_attribute("data-id") == second
    page.click("#new-chat")
    send(page, "a brand new one")
    page.wait_for_selector(".message.assistant.completed", timeout=20_000)
    assert page.locator("#conversations li").first.inner_text() == "a brand new one"
    shot(page, "chat-conversations")


def test_a_failed_reply_shows_its_reason(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(fail=[500] * 10)
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "this will fail")
    page.wait_for_selector(".message.assistant.error", timeout=20_000)
    assert "500" in page.inner_text(".message.assistant .failure")
    send(page, "   ")
    assert page.locator(".message.user").count() == 1, "a blank message is not sent"
