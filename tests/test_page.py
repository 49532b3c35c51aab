"""The chat page in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, sync_playwright

from conftest import ARTIFACTS, Cluster, FakeProvider, Server, ServerFactory
from streamchat.llm.local_models import UNPACK_LOCK

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


def expected_renders_ok(renders: list[str], expected: str) -> None:
    """Every text the page showed is a prefix of the final reply: never a repeat, never a mix."""
    for text in renders:
        assert expected.startswith(text.strip()) or not text.strip(), f"the page showed {text!r}"


def test_reload_mid_reply_continues_without_repeating(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"line{i} " for i in range(60)]
    fake_provider.script(tokens=tokens, delay=0.05)
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "long reply please")
    page.wait_for_function("document.querySelector('.message.assistant .body')?.innerText.length > 20")
    page.add_init_script(RECORD_RENDERS)
    page.reload()
    page.wait_for_selector(".message.assistant.streaming")
    page.wait_for_selector(".message.assistant.completed", timeout=30_000)
    expected = "".join(tokens).strip()
    assert page.inner_text(".message.assistant .body").strip() == expected
    renders = page.evaluate("window.__renders")
    expected_renders_ok(renders, expected)
    assert len(renders) > 3, "after the reload the reply kept streaming in"
    shot(page, "chat-after-reload")


def test_a_dropped_socket_resumes_without_duplicates(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"w{i} " for i in range(60)]
    fake_provider.script(tokens=tokens, delay=0.04)
    page.add_init_script(RECORD_RENDERS)
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "survive a dropped connection")
    page.wait_for_function("document.querySelector('.message.assistant .body')?.innerText.length > 10")
    page.evaluate("window.streamchat.live.socket.close()")
    page.wait_for_selector("#connection.offline")
    page.wait_for_selector("#connection.online", timeout=10_000)
    page.wait_for_selector(".message.assistant.completed", timeout=30_000)
    expected = "".join(tokens).strip()
    assert page.inner_text(".message.assistant .body").strip() == expected
    expected_renders_ok(page.evaluate("window.__renders"), expected)


def test_two_tabs_stay_identical(browser: Browser, server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"same{i} " for i in range(40)]
    fake_provider.script(tokens=tokens, delay=0.03)
    context = browser.new_context()
    first, second = context.new_page(), context.new_page()
    for tab in (first, second):
        tab.add_init_script(RECORD_RENDERS)
    first.goto(server.url)
    first.wait_for_selector("#connection.online")
    send(first, "watched twice")
    first.wait_for_function("location.hash.length > 1")
    second.goto(server.url + "/" + first.evaluate("location.hash"))
    for tab in (first, second):
        tab.wait_for_selector(".message.assistant.completed", timeout=30_000)
    expected = "".join(tokens).strip()
    assert first.inner_text("#messages") == second.inner_text("#messages")
    for tab in (first, second):
        assert tab.inner_text(".message.assistant .body").strip() == expected
        expected_renders_ok(tab.evaluate("window.__renders"), expected)
    shot(second, "chat-second-tab")
    context.close()


def test_the_stop_button_stops_the_reply(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=[f"t{i} " for i in range(200)], delay=0.05)
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "go on forever")
    page.wait_for_function("document.querySelector('.message.assistant .body')?.innerText.length > 10")
    page.click(".message.assistant button[data-action=stop]")
    page.wait_for_selector(".message.assistant.stopped", timeout=5_000)
    text = page.inner_text(".message.assistant .body")
    page.wait_for_timeout(300)
    assert page.inner_text(".message.assistant .body") == text, "no text arrives after the stop"
    assert page.locator(".message.assistant button[data-action=regenerate]").count() == 1
    shot(page, "chat-stopped")
    fake_provider.script(tokens=["Fresh", " answer"], delay=0.0)
    page.click(".message.assistant button[data-action=regenerate]")
    page.wait_for_selector(".message.assistant.completed", timeout=10_000)
    assert page.locator(".message.assistant").count() == 2


def test_the_inspector_shows_the_flow_and_the_trace_of_a_chat(
    page: Page, server: Server, fake_provider: FakeProvider
) -> None:
    page.goto(server.url)
    page.click("#tabs button[data-tab=inspector]")
    page.wait_for_selector("#flow-graph")
    for node in ("api:ChatApi", "topic:chat-message", "event:AiResponse", "stream:conversation"):
        assert page.locator(f"#flow-graph [data-node='{node}']").count() == 1, node
    for edge_from, edge_to in (("api:ChatApi", "topic:chat-message"), ("topic:chat-message", "event:AiResponse"),
                               ("event:AiResponse", "stream:conversation")):
        assert page.locator(f"#flow-graph path[data-from='{edge_from}'][data-to='{edge_to}']").count() == 1
    shot(page, "inspector-flow")

    trace = f"trace-{uuid.uuid4().hex[:8]}"
    accepted = httpx.post(f"{server.url}/chat", json={"message": "inspect me"}, headers={"x-trace-id": trace}).json()
    page.click("#inspector nav button[data-panel=log]")
    page.wait_for_selector("#log-rows tr.run >> text=finished", timeout=10_000)
    assert page.locator("#log-rows tr.emit").count() >= 1
    shot(page, "inspector-log")

    page.click("#inspector nav button[data-panel=traces]")
    page.wait_for_selector(f"#trace-list li[data-trace='{trace}']")
    page.click(f"#trace-list li[data-trace='{trace}']")
    page.wait_for_selector("#trace-view .trace-row")
    view = page.inner_text("#trace-view")
    for expected in ("ChatApi", "POST /chat", "emit chat-message", "AiResponse", "first-delta", "completed"):
        assert expected in view, f"{expected!r} missing from the trace view:\n{view}"
    shot(page, "inspector-trace")

    page.click("#inspector nav button[data-panel=streams]")
    page.click(f"#stream-groups li[data-group='{accepted['conversationId']}']")
    page.wait_for_selector(f"#stream-items pre[data-id='{accepted['assistantMessageId']}']")
    assert "completed" in page.inner_text(f"#stream-items pre[data-id='{accepted['assistantMessageId']}']")
    shot(page, "inspector-streams")

    page.click("#inspector nav button[data-panel=endpoints]")
    page.select_option("#endpoint", label="POST /chat")
    page.fill("#endpoint-body", '{"message": "sent from the tester"}')
    page.click("#endpoint-send")
    page.wait_for_selector("#endpoint-result .status >> text=200")
    assert "Message received" in page.inner_text("#endpoint-result pre")
    shot(page, "inspector-endpoints")


def product_with_a_broken_step(root: Path) -> str:
    """A steps package: every product step file re-exported, plus one event step that always fails."""
    name = f"pkg_{uuid.uuid4().hex[:8]}"
    package = root / name
    package.mkdir()
    exports = {"conversation_stream": "config", "ai_response_step": "config, handler, on_failure",
               **{module: "config, handler" for module in (
                   "chat_api_step", "list_conversations_step", "get_conversation_step", "stop_message_step",
                   "regenerate_message_step")}}
    (package / "__init__.py").write_text("")
    for module, names in exports.items():
        (package / f"{module}.py").write_text(f"from streamchat.steps.{module} import {names}  # noqa: F401\n")
    (package / "broken_step.py").write_text(
        "from streamchat.framework import EventConfig\n"
        "from streamchat.steps.ai_response_step import ChatMessageEvent\n"
        "config = EventConfig(name='Broken', subscribes=['chat-message'], input=ChatMessageEvent, max_retries=0)\n"
        "async def handler(data, ctx):\n"
        "    raise RuntimeError('broken on purpose')\n")
    return name


def test_a_page_on_one_instance_follows_a_reply_made_on_another(
    page: Page, cluster: Cluster, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    tokens = [f"far{i} " for i in range(40)]
    fake_provider.script(tokens=tokens, delay=0.05)
    package = product_with_a_broken_step(tmp_path)
    servers = cluster.start_many(2, STREAMCHAT_STEPS=package, PYTHONPATH=str(tmp_path))
    trace = uuid.uuid4().hex
    accepted = httpx.post(f"{servers[0].url}/chat", json={"message": "made elsewhere"},
                          headers={"x-trace-id": trace}).json()
    started = f'"msg":"handler started","step":"AiResponse","trace_id":"{trace}"'
    deadline = time.monotonic() + 15
    while not any(started in server.logs() for server in servers) and time.monotonic() < deadline:
        time.sleep(0.02)
    generator = next(server for server in servers if started in server.logs())
    watcher = servers[1] if generator is servers[0] else servers[0]

    page.add_init_script(RECORD_RENDERS)
    page.goto(f"{watcher.url}/#{accepted['conversationId']}")
    page.wait_for_selector(".message.assistant.completed", timeout=20_000)
    assert page.inner_text(".message.assistant .body").strip() == "".join(tokens).strip()
    assert page.inner_text(".message.user .body") == "made elsewhere"
    renders = page.evaluate("window.__renders")
    assert any(0 < len(text.strip()) < len("".join(tokens).strip()) for text in renders), (
        "the page should have shown the reply growing, not only its end")
    shot(page, "cluster-chat")

    page.click("#tabs button[data-tab=inspector]")
    page.click("#inspector nav button[data-panel=dead]")
    page.wait_for_selector("#dead-rows tr.dead-letter", timeout=10_000)
    row = page.inner_text("#dead-rows tr.dead-letter")
    assert "Broken" in row and "chat-message" in row and "broken on purpose" in row
    shot(page, "inspector-dead-letters")


def test_the_page_asks_for_a_key_when_the_server_needs_one(
    page: Page, servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    key = "page-key-0123456789"
    server = servers.start(STREAMCHAT_API_KEYS=key)
    fake_provider.script(tokens=["behind ", "a key"])
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept(key)

    page.on("dialog", answer)
    page.goto(server.url)
    page.wait_for_selector("#connection.online", timeout=15_000)
    send(page, "hello with a key")
    page.wait_for_selector(".message.assistant.completed", timeout=20_000)
    assert page.inner_text(".message.assistant .body").strip() == "behind a key"
    assert asked and "API key" in asked[0]
    assert page.evaluate("localStorage.getItem('streamchat.key')") == key
    listed = httpx.get(f"{server.url}/api/conversations", headers={"Authorization": f"Bearer {key}"}).json()
    assert len(listed["conversations"]) == 1, "the page's conversation belongs to the key it was given"


def test_the_default_model_answers_in_the_page(page: Page, servers: ServerFactory) -> None:
    """What a new user meets: the page on the embedded default model, a question, a useful answer."""
    server = servers.start_local(STREAMCHAT_MAX_TOKENS="200", STREAMCHAT_TEMPERATURE="0")
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    page.wait_for_function("document.getElementById('model').textContent.includes('smollm2-135m-instruct')")
    send(page, "Show me a Python function that reverses a string, in a code block")
    page.wait_for_selector(".message.assistant.completed", timeout=120_000)
    page.wait_for_selector("#model-notice", state="hidden", timeout=10_000)
    code = page.inner_text(".message.assistant .body pre")
    assert "def " in code and "[::-1]" in code, code
    shot(page, "embedded-default-model")


def test_the_page_says_the_model_is_being_prepared_and_answers_once_it_is(
    page: Page, servers: ServerFactory, tmp_path: Path,
) -> None:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    with (models / UNPACK_LOCK).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as if another process were unpacking the model right now
        server = servers.start_local(STREAMCHAT_LOCAL_MODEL="gemma3-270m", STREAMCHAT_MAX_TOKENS="40",
                          STREAMCHAT_TEMPERATURE="0")
        page.goto(server.url)
        page.wait_for_selector("#connection.online")
        notice = page.wait_for_selector("#model-notice:not([hidden])")
        assert notice is not None and "preparing the local model…" in notice.inner_text()
        send(page, "What is the capital of France?")
        page.wait_for_selector(".message.assistant.streaming")
        assert page.query_selector(".failure") is None and page.is_hidden("#error")
        shot(page, "embedded-model-preparing")
    page.wait_for_selector(".message.assistant.completed", timeout=120_000)
    page.wait_for_selector("#model-notice", state="hidden", timeout=10_000)
    assert page.inner_text(".message.assistant .body").strip()
    assert "gemma3-270m (local)" in page.inner_text("#model")
