"""The chat page in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import fcntl
import json
import os
import re
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

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


def until_showing(page: Page, text: str) -> None:
    """Wait until the newest reply shows exactly `text` while it streams (what a held reply has sent)."""
    page.wait_for_function("""(text) => {
        const replies = document.querySelectorAll('.message.assistant.streaming .body');
        return replies.length > 0 && replies[replies.length - 1].innerText.trim() === text;
    }""", arg=text.strip(), timeout=20_000)


def until_closed_by_client(fake: FakeProvider, number: int = 0, timeout: float = 30) -> dict[str, object]:
    """The `number`-th provider stream, once its client (the server) has hung up on it."""
    deadline = time.monotonic() + timeout
    while True:
        streams = fake.streams()
        if len(streams) > number and streams[number]["closed_by_client_at"] is not None:
            return streams[number]
        assert time.monotonic() < deadline, f"reply {number} not closed by the server: {streams}"
        time.sleep(0.02)


def test_a_reply_appears_progressively_in_the_page(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"word{i} " for i in range(25)]
    fake_provider.script(tokens=tokens, hold_after=10)  # held mid-way until the page shows it
    page.add_init_script(RECORD_RENDERS)
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "Hello from the browser")
    until_showing(page, "".join(tokens[:10]))
    fake_provider.release()
    page.wait_for_selector(".message.assistant.completed", timeout=20_000)
    expected = "".join(tokens).strip()
    assert page.inner_text(".message.assistant .body").strip() == expected
    assert page.inner_text(".message.user .body") == "Hello from the browser"
    renders = page.evaluate("window.__renders")
    expected_renders_ok(renders, expected)
    assert "".join(tokens[:10]).strip() in [text.strip() for text in renders], "the reply grew in the page"
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
    held = "".join(tokens[:5])
    fake_provider.script(tokens=tokens, hold_after=5)  # held mid-way until the reloaded page shows it
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "long reply please")
    until_showing(page, held)
    page.add_init_script(RECORD_RENDERS)
    page.reload()
    until_showing(page, held)
    fake_provider.release()
    page.wait_for_selector(".message.assistant.completed", timeout=30_000)
    expected = "".join(tokens).strip()
    assert page.inner_text(".message.assistant .body").strip() == expected
    renders = page.evaluate("window.__renders")
    expected_renders_ok(renders, expected)
    shown = [text.strip() for text in renders]
    assert held.strip() in shown and shown[-1] == expected, "after the reload the reply kept streaming in"
    shot(page, "chat-after-reload")


def test_a_dropped_socket_resumes_without_duplicates(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"w{i} " for i in range(60)]
    fake_provider.script(tokens=tokens, hold_after=5)  # held mid-way until the page is back online
    page.add_init_script(RECORD_RENDERS)
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "survive a dropped connection")
    until_showing(page, "".join(tokens[:5]))
    page.evaluate("window.streamchat.live.socket.close()")
    page.wait_for_selector("#connection.offline")
    page.wait_for_selector("#connection.online", timeout=20_000)
    fake_provider.release()
    page.wait_for_selector(".message.assistant.completed", timeout=30_000)
    expected = "".join(tokens).strip()
    assert page.inner_text(".message.assistant .body").strip() == expected
    expected_renders_ok(page.evaluate("window.__renders"), expected)


def test_two_tabs_stay_identical(browser: Browser, server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"same{i} " for i in range(40)]
    fake_provider.script(tokens=tokens, hold_after=5)  # held mid-way until both tabs show it
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
        until_showing(tab, "".join(tokens[:5]))
    fake_provider.release()
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
    held = "t0 t1 t2 t3 t4 "
    fake_provider.script(tokens=[f"t{i} " for i in range(200)], hold_after=5)  # never released: the stop ends it
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "go on forever")
    until_showing(page, held)
    page.click(".message.assistant button[data-action=stop]")
    page.wait_for_selector(".message.assistant.stopped", timeout=20_000)
    # No text can arrive after the stop: the server hung up on the provider where it was held.
    record = until_closed_by_client(fake_provider)
    assert record["sent"] == 5 and not record["finished"], record
    assert page.inner_text(".message.assistant .body").strip() == held.strip()
    assert page.locator(".message.assistant button[data-action=regenerate]").count() == 1
    shot(page, "chat-stopped")
    fake_provider.script(tokens=["Fresh", " answer"], hold_after=None)
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
               "tool_call_step": "config, handler, on_failure",
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
    fake_provider.script(tokens=tokens, hold_after=10)  # held mid-way until the page on the other instance shows it
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
    until_showing(page, "".join(tokens[:10]))
    fake_provider.release()
    page.wait_for_selector(".message.assistant.completed", timeout=20_000)
    assert page.inner_text(".message.assistant .body").strip() == "".join(tokens).strip()
    assert page.inner_text(".message.user .body") == "made elsewhere"
    renders = page.evaluate("window.__renders")
    expected_renders_ok(renders, "".join(tokens).strip())
    assert "".join(tokens[:10]).strip() in [text.strip() for text in renders], (
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


# -- the conversation list, export, Markdown, usage and copy (issue 15) ----------------------------

def chat(server: Server, message: str, conversation_id: str | None = None, key: str | None = None) -> dict[str, str]:
    """Send a message over HTTP and wait until its reply has finished; the /chat answer."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"message": message} | ({"conversationId": conversation_id} if conversation_id else {})
    accepted: dict[str, str] = httpx.post(f"{server.url}/chat", json=body, headers=headers).json()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        detail = httpx.get(f"{server.url}/api/conversations/{accepted['conversationId']}", headers=headers).json()
        reply = next((m for m in detail["messages"] if m["id"] == accepted["assistantMessageId"]), None)
        if reply and reply["status"] in ("completed", "error", "stopped"):
            return accepted
        time.sleep(0.05)
    raise TimeoutError(f"the reply to {message!r} did not finish")


def test_search_shows_snippets_and_jumps_to_the_message(
    page: Page, server: Server, fake_provider: FakeProvider,
) -> None:
    word = f"quokka{uuid.uuid4().hex[:6]}"
    fake_provider.script(tokens=[f"Line {i} of a long answer.\n\n" for i in range(25)])
    opening = chat(server, "Let us talk about marsupials")
    match = chat(server, f"Tell me where the {word} lives, and what it eats", opening["conversationId"])
    for turn in range(3):   # later turns push the matching message far above the bottom
        chat(server, f"And then part {turn}?", opening["conversationId"])
    chat(server, "an unrelated conversation about pears")
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    page.fill("#search", word)
    result = page.locator(f"#results li[data-id='{opening['conversationId']}']")
    result.wait_for()
    assert page.locator("#results li").count() == 1
    assert page.is_hidden("#conversations")
    assert word in result.locator(".snippet").inner_text()
    assert result.locator(".snippet mark").first.inner_text().lower() == word
    assert result.get_attribute("data-message") == match["userMessageId"]
    shot(page, "page-search-results")
    result.click()
    target = page.locator(f"#m-{match['userMessageId']}")
    expect(target).to_have_class(re.compile(r"\bfound\b"))
    expect(target).to_be_in_viewport()
    assert page.locator(".message").count() == 10
    expect(page.locator(".message").last).not_to_be_in_viewport()
    shot(page, "page-search-jumped")
    page.fill("#search", "")
    page.press("#search", "Escape")
    expect(page.locator("#conversations")).to_be_visible()
    expect(page.locator("#results")).to_be_hidden()


def test_rename_and_delete_from_the_list(page: Page, server: Server, fake_provider: FakeProvider) -> None:
    keep = chat(server, f"keep me {uuid.uuid4().hex[:6]}")
    doomed = chat(server, f"delete me {uuid.uuid4().hex[:6]}")
    page.goto(f"{server.url}/#{keep['conversationId']}")
    page.wait_for_selector("#connection.online")
    page.wait_for_selector(".message.assistant.completed")

    row = page.locator(f"#conversations li[data-id='{keep['conversationId']}']")
    row.hover()
    row.get_by_role("button", name="Rename conversation").click()
    editor = row.locator("input.rename")
    new_title = f"Renamed {uuid.uuid4().hex[:6]}"
    editor.fill(new_title)
    shot(page, "page-rename-editing")
    editor.press("Enter")
    expect(row.locator(".title")).to_have_text(new_title)
    expect(page.locator("#conversation-title")).to_have_text(new_title)
    listed = httpx.get(f"{server.url}/api/conversations").json()["conversations"]
    assert {c["conversationId"]: c["title"] for c in listed}[keep["conversationId"]] == new_title
    row.hover()
    row.get_by_role("button", name="Rename conversation").click()
    row.locator("input.rename").fill("not saved")
    row.locator("input.rename").press("Escape")
    expect(row.locator(".title")).to_have_text(new_title)
    shot(page, "page-renamed")

    other = page.locator(f"#conversations li[data-id='{doomed['conversationId']}']")
    other.click()
    page.wait_for_selector(f"#m-{doomed['assistantMessageId']}.completed")
    other.get_by_role("button", name="Delete conversation").click()
    expect(other).to_have_class(re.compile(r"\bconfirming\b"))
    assert "Delete this conversation?" in other.inner_text()
    shot(page, "page-delete-asks-first")
    other.get_by_role("button", name="Cancel").click()
    expect(other.locator(".title")).to_have_text(re.compile("^delete me "))
    assert httpx.get(f"{server.url}/api/conversations/{doomed['conversationId']}").status_code == 200

    other.hover()
    other.get_by_role("button", name="Delete conversation").click()
    other.get_by_role("button", name="Delete", exact=True).click()
    expect(other).to_have_count(0)
    assert httpx.get(f"{server.url}/api/conversations/{doomed['conversationId']}").status_code == 404
    expect(page.locator("#messages .empty")).to_have_text("Start a conversation below.")
    assert page.evaluate("location.hash") == ""
    expect(page.locator(f"#conversations li[data-id='{keep['conversationId']}']")).to_have_count(1)
    shot(page, "page-deleted")


def test_a_tab_coming_back_into_view_shows_what_other_tabs_did(
    page: Page, server: Server, fake_provider: FakeProvider,
) -> None:
    renamed, deleted = chat(server, "rename me elsewhere"), chat(server, "delete me elsewhere")
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    for started in (renamed, deleted):
        expect(page.locator(f"#conversations li[data-id='{started['conversationId']}']")).to_have_count(1)
    # Another tab (here: the API) starts one conversation, renames one and deletes one.
    added = chat(server, "started elsewhere")
    assert httpx.patch(f"{server.url}/api/conversations/{renamed['conversationId']}",
                       json={"title": "Renamed elsewhere"}).status_code == 200
    assert httpx.delete(f"{server.url}/api/conversations/{deleted['conversationId']}").status_code == 204
    expect(page.locator(f"#conversations li[data-id='{added['conversationId']}']")).to_have_count(0)

    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # the tab is shown again
    expect(page.locator(f"#conversations li[data-id='{added['conversationId']}']")).to_have_count(1)
    expect(page.locator(f"#conversations li[data-id='{renamed['conversationId']}'] .title")).to_have_text(
        "Renamed elsewhere")
    expect(page.locator(f"#conversations li[data-id='{deleted['conversationId']}']")).to_have_count(0)
    shot(page, "page-list-refreshed")


def test_the_list_loads_more_pages(page: Page, servers: ServerFactory, fake_provider: FakeProvider) -> None:
    server = servers.start()
    for n in range(52):   # one more page than the list's first (50)
        httpx.post(f"{server.url}/chat", json={"message": f"conversation number {n}"}).raise_for_status()
    page.goto(server.url)
    expect(page.locator("#conversations li")).to_have_count(50)
    page.click("#more")
    expect(page.locator("#conversations li")).to_have_count(52)
    expect(page.locator("#more")).to_be_hidden()
    titles = page.locator("#conversations li .title").all_inner_texts()
    assert sorted(titles) == sorted(f"conversation number {n}" for n in range(52)), "every one once"


def test_export_downloads_markdown_and_json_with_the_key(
    page: Page, servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    key = "export-key-0123456789"
    server = servers.start(STREAMCHAT_API_KEYS=key)
    fake_provider.script(tokens=["Exported ", "**answer**"])
    accepted = chat(server, "export this conversation", key=key)
    page.add_init_script(f"localStorage.setItem('streamchat.key', {key!r})")
    page.goto(f"{server.url}/#{accepted['conversationId']}")
    page.wait_for_selector(".message.assistant.completed")
    expect(page.locator("#conversation-head")).to_be_visible()
    shot(page, "page-export")

    with page.expect_download() as markdown_download:
        page.click("#conversation-head button[data-export=markdown]")
    markdown = markdown_download.value
    assert markdown.suggested_filename == f"conversation-{accepted['conversationId']}.md"
    text = Path(markdown.path()).read_text()
    assert "export this conversation" in text and "Exported **answer**" in text

    with page.expect_download() as json_download:
        page.click("#conversation-head button[data-export=json]")
    exported = json.loads(Path(json_download.value.path()).read_text())
    assert json_download.value.suggested_filename.endswith(".json")
    assert exported["conversationId"] == accepted["conversationId"]
    assert [m["id"] for m in exported["messages"]] == [accepted["userMessageId"], accepted["assistantMessageId"]]
    assert page.is_hidden("#error")


RICH_REPLY = """Here is the comparison:

| language | typing | first release |
|----------|:------:|--------------:|
| Python   | dynamic | 1991 |
| Rust     | static | 2015 |

> Quoted: *both* are fine choices.

1. First point
   - nested bullet
   - another nested bullet
2. Second point

```python
def reverse(text: str) -> str:
    return text[::-1]
```

Save it as reverse.py.

Raw HTML stays text: <b onclick="window.pwned=1">not bold</b>, and [a trap](javascript:window.pwned=2).
"""


def test_a_reply_with_a_table_highlighted_code_usage_and_copy(
    page: Page, server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tokens=re.findall(r"\S+\s*|\s+", RICH_REPLY), delay=0.005)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "Compare Python and Rust, with a table and some code")
    page.wait_for_selector(".message.assistant.completed", timeout=20_000)
    reply = page.locator(".message.assistant")
    body = reply.locator(".body")
    assert body.locator("table th").all_inner_texts() == ["language", "typing", "first release"]
    assert body.locator("table tbody tr").count() == 2
    assert body.locator("table td").nth(2).get_attribute("style") == "text-align:right"
    assert body.locator("blockquote em").inner_text() == "both"
    assert body.locator("ol > li > ul > li").count() == 2
    code = body.locator(".code-block code.language-python")
    assert code.inner_text().strip() == 'def reverse(text: str) -> str:\n    return text[::-1]'
    assert code.locator(".hljs-keyword").first.inner_text() == "def"
    assert body.locator(".code-block .language").inner_text() == "python"
    assert page.locator(".message b, .message [onclick], .message a[href^=javascript]").count() == 0
    assert '<b onclick="window.pwned=1">' in body.inner_text()
    assert page.evaluate("window.pwned") is None
    assert body.locator("a").count() == 0, "setup.py is a file name, not a link"

    usage = reply.locator(".usage")
    expect(usage).to_be_visible()
    assert re.fullmatch(r"fake-model · \d+ \+ \d+ tokens · \d+\.\d s", usage.inner_text()), usage.inner_text()
    assert page.locator(".message.user .usage").is_hidden()
    shot(page, "page-table-and-code")

    body.locator(".code-block").get_by_role("button", name="Copy code").click()
    expect(body.locator(".code-block button.copied")).to_have_count(1)
    assert page.evaluate("navigator.clipboard.readText()") == 'def reverse(text: str) -> str:\n    return text[::-1]\n'
    shot(page, "page-copied-code")
    reply.locator(".meta").get_by_role("button", name="Copy message").click()
    expect(reply.locator(".meta button.copied")).to_have_count(1)
    assert page.evaluate("navigator.clipboard.readText()") == RICH_REPLY
    page.locator(".message.user").get_by_role("button", name="Copy message").click()
    expect(page.locator(".message.user .meta button.copied")).to_have_count(1)
    assert page.evaluate("navigator.clipboard.readText()") == "Compare Python and Rust, with a table and some code"


# Cut points a streamed reply passes through that could fool an incremental renderer: a table whose
# header arrives before its delimiter row, a setext heading, lazy continuation lines, a list broken
# by a blank line, an open fence, a reference link defined before its use.
TRICKY_MARKDOWN = """Intro paragraph
| a | b |
|---|---|
| 1 | 2 |
after the table

Setext heading
--------------
> quote line
lazy continuation

- item one

  more of item one
- item two
plain again

1. one
2. two

   ```js
   const inList = true;
   ```

[ref]: https://example.org/ref
Uses [the ref][ref] and https://example.org/auto.

```python
for i in range(3):

    print(i)
```
    indented code
***
Paths like setup.py and README.md stay text; <b>raw</b> stays text.
3. a list that starts at three
| x |
|---|
| y |
Tail text with **bold
"""


LATE_DEFINITION = "Sources: [the docs][1] and [the spec][2].\n\nMore text.\n\n[1]: https://example.org/docs\n[2]: https://example.org/spec\n"


def test_incremental_markdown_matches_a_full_render_at_every_token(page: Page, server: Server) -> None:
    page.goto(server.url)
    mismatches = page.evaluate("""([tricky, late]) => {
        const { MarkdownView, render } = window.StreamchatMarkdown;
        const live = document.createElement("div"), full = document.createElement("div");
        const bad = [];
        const compare = (view, text, ended) => {
            view.update(text, ended);
            full.replaceChildren(render(text));
            if (live.innerHTML !== full.innerHTML) bad.push({text, ended, live: live.innerHTML, full: full.innerHTML});
        };
        // One character at a time: every cut point there is, each compared with a full render.
        let view = new MarkdownView(live);
        for (let n = 1; n <= tricky.length; n++) compare(view, tricky.slice(0, n), false);
        compare(view, tricky, true);
        compare(view, "Something else entirely", false);   // not a continuation: starts over
        // Links defined below their use resolve once the reply has ended.
        view = new MarkdownView(live);
        for (let n = 1; n < late.length; n++) view.update(late.slice(0, n), false);
        compare(view, late, true);
        return bad.slice(0, 3);
    }""", [TRICKY_MARKDOWN, LATE_DEFINITION])
    assert mismatches == [], mismatches
    assert page.evaluate("""(late) => {
        const box = document.createElement("div");
        new window.StreamchatMarkdown.MarkdownView(box).update(late, true);
        return [...box.querySelectorAll("a")].map((a) => a.href);
    }""", LATE_DEFINITION) == ["https://example.org/docs", "https://example.org/spec"]


SECTION = """## Section {n}: measuring things

Some prose with **bold**, `inline code` and a [link](https://example.org/{n}). More words, so that the
paragraph wraps over a few lines in the page, as an assistant's explanations do.

- a point about item {n}
  - a nested detail
  - another nested detail
- a second point

| step | input | time (ms) | note |
|------|------:|----------:|------|
| parse | {n} | 1.{n} | fast |
| render | {n} | 2.{n} | incremental |
| sanitize | {n} | 0.{n} | DOMPurify |

> A quote to finish the thought of section {n}.

```python
def section_{n}(values: list[int]) -> int:
    \"\"\"Sum the even values, times {n}.\"\"\"
    total = 0
    for value in values:
        if value % 2 == 0:
            total += value * {n}
    return total
```

"""


def long_reply(tokens: int) -> list[str]:
    """At least `tokens` tokens of Markdown (a word and the spaces after it is a token), in whole sections."""
    out: list[str] = []
    section = 0
    while len(out) < tokens:
        section += 1
        out += re.findall(r"\S+\s*|\s+", SECTION.format(n=section))
    return out


def frames_between(times: list[dict[str, float]], start: int, end: int, key: str = "ms") -> list[float]:
    return [t[key] for t in times if start <= t["chars"] <= end]


def spread(ms: list[float]) -> dict[str, float]:
    if not ms:  # how many frames a stretch of the reply gets depends on the machine's speed
        return {"frames": 0}
    return {"frames": len(ms), "median": round(statistics.median(ms), 3),
            "p90": round(sorted(ms)[int(len(ms) * 0.9)], 3), "max": round(max(ms), 3)}


def test_the_work_of_one_update_does_not_grow_with_the_reply(
    page: Page, server: Server, fake_provider: FakeProvider,
) -> None:
    """The page renders a long reply incrementally: each update parses what arrived plus the
    unfinished last block, never the reply so far. Counted in characters parsed, not timed: the
    time a frame takes is the benchmark's to measure, and only reported here."""
    tokens = long_reply(10_100)
    offsets = [0]
    for token in tokens:
        offsets.append(offsets[-1] + len(token))
    fake_provider.script(tokens=tokens, delay=0.001)
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "a very long answer, please")
    page.wait_for_selector(".message.assistant.completed", timeout=60_000)
    text = "".join(tokens)
    assert page.locator(".message.assistant .body table").count() == text.count("| step |")
    assert page.locator(".message.assistant .body .code-block").count() == text.count("```python")
    assert page.locator(".message.assistant .body .hljs-keyword").count() > 0
    same = page.evaluate("""() => {
        const reply = [...window.streamchat.chat.items.values()].find((item) => item.from === "assistant");
        const full = document.createElement("div");
        full.append(window.StreamchatMarkdown.render(reply.message));
        return full.innerHTML === document.querySelector(".message.assistant .body").innerHTML;
    }""")
    assert same, "the incremental render ends exactly where a full render of the whole reply does"

    # The reply again, token by token, through the page's own view: how much each update parses.
    parsed = page.evaluate("""(tokens) => {
        const view = new window.StreamchatMarkdown.MarkdownView(document.createElement("div"));
        const parsed = [];
        let text = "";
        for (const token of tokens) {
            text += token;
            parsed.push(text.length - view.done);
            view.update(text);
        }
        return parsed;
    }""", tokens)
    near_2k, near_10k = max(parsed[1600:2000]), max(parsed[9600:10_000])
    # Sections repeat, so the longest unfinished block is as long at 10k tokens as at 2k (give or
    # take the section number's digits); re-parsing the reply so far would be tens of thousands.
    assert near_10k <= near_2k + 16, f"one update parses {near_10k} chars near 10k tokens, {near_2k} near 2k"
    assert near_10k < offsets[2000] / 10, f"one update parses {near_10k} of {offsets[10_000]} chars"

    times = page.evaluate("window.streamchat.chat.renderTimes.filter((t) => t.chars > 0)")
    near = {"2k": frames_between(times, offsets[1600], offsets[2000]),
            "10k": frames_between(times, offsets[9600], offsets[10_000])}
    # The whole frame's work for the message: the Markdown update plus the layout that scrolling forces.
    whole = {"2k": frames_between(times, offsets[1600], offsets[2000], "frameMs"),
             "10k": frames_between(times, offsets[9600], offsets[10_000], "frameMs")}
    full = page.evaluate("""(lengths) => {
        const reply = [...window.streamchat.chat.items.values()].find((item) => item.from === "assistant");
        return lengths.map((length) => {
            const runs = [];
            for (let i = 0; i < 5; i++) {
                const started = performance.now();
                window.StreamchatMarkdown.render(reply.message.slice(0, length));
                runs.push(performance.now() - started);
            }
            return runs.sort((a, b) => a - b)[2];
        });
    }""", [offsets[2000], offsets[10_000]])
    report = {
        "tokens": len(tokens), "chars": len(text), "frames": len(times),
        "max_chars_parsed_per_update_near_2k": near_2k, "max_chars_parsed_per_update_near_10k": near_10k,
        **{f"frame_ms_near_{name}": spread(ms) for name, ms in near.items()},
        **{f"whole_frame_ms_near_{name}": spread(ms) for name, ms in whole.items()},
        "whole_reply_render_ms_at_2k": round(full[0], 3), "whole_reply_render_ms_at_10k": round(full[1], 3),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "render-times.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\nper-frame Markdown render times (a report, not a check):", json.dumps(report, indent=2))
    shot(page, "page-long-reply")
