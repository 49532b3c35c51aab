"""A reply's tool calls on the chat page, in a real browser (Debian's Chromium driven by Playwright): a call
whose arguments stream in and which ends with its result, at its place in the reply's text; Approve and Deny
answered from the page (the buttons go in every tab); a running call stopped with the reply's Stop; two tabs
showing the same calls. A real server process with the tool files of tests/loop_tools and an API key, so
every answer the page sends carries the page's key; the fake provider streams the calls in pieces."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

import test_page
from conftest import FakeProvider, Server, ServerFactory
from test_page import send, shot
from test_tool_clients import with_loop_tools

# test_page.py's Chromium, shared by the module.
browser = test_page.browser

KEY = "page-tools-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT = 20_000   # ms: a bound on a hang, never a measure of speed

# What a reply's body shows, top to bottom: its text segments and its rounds' calls (textContent, so a
# closed block's arguments and outcome count too).
LAYOUT = """(replyId) => {
  const reply = document.getElementById('m-' + replyId);
  if (!reply) return null;
  const body = reply.querySelector('.body');
  const call = (el) => ({id: el.dataset.id, name: el.querySelector('.tool-name').textContent,
    status: el.dataset.status, arguments: el.querySelector('.tool-arguments').textContent,
    outcome: el.querySelector('.tool-outcome').hidden ? null : el.querySelector('.tool-outcome pre').textContent,
    buttons: el.querySelectorAll('.tool-approval button').length, spinning: !!el.querySelector('.spinner')});
  if (!body.querySelector('.tool-calls')) return [['text', body.textContent.trim()]];
  return [...body.children].map((el) => el.classList.contains('segment')
    ? ['text', el.textContent.trim()] : ['calls', [...el.querySelectorAll('.tool-call')].map(call)]);
}"""


@pytest.fixture(scope="module")
def tool_server(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server process for the module: the loop_tools files, and a key every request needs."""
    factory = ServerFactory(fake_provider, tmp_path_factory.mktemp("page-tools"))
    server = factory.start(STREAMCHAT_API_KEYS=KEY, **with_loop_tools())
    yield server
    factory.stop_all()


@pytest.fixture
def open_tab(browser: Browser, tool_server: Server) -> Iterator[Callable[[str], Page]]:
    """Open the page (at a conversation, or "" for none) in a tab of one browser context, holding the
    key as a user who typed it once; every tab fails the test on a JavaScript error or a key prompt."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.add_init_script(f"localStorage.setItem('streamchat.key', {KEY!r})")
    problems: list[str] = []

    def opened(cid: str) -> Page:
        tab = context.new_page()
        tab.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))
        tab.on("dialog", lambda dialog: record_dialog(dialog, problems))
        tab.goto(f"{tool_server.url}/#{cid}" if cid else tool_server.url)
        tab.wait_for_selector("#connection.online")
        return tab

    yield opened
    context.close()
    assert problems == []


def record_dialog(dialog: Dialog, problems: list[str]) -> None:
    problems.append(f"the page asked: {dialog.message}")
    dialog.dismiss()


def layout(tab: Page, reply_id: str) -> list[Any]:
    shown: list[Any] = tab.evaluate(LAYOUT, reply_id)
    return shown


def until_layout(tab: Page, reply_id: str, expected: list[Any]) -> None:
    """Wait until the reply is laid out as expected (its text and its calls arrive as separate writes)."""
    want = json.dumps(expected, separators=(",", ":"), ensure_ascii=False)
    with suppress(PlaywrightTimeout):   # the assertion below shows the difference
        tab.wait_for_function(f"([id, want]) => JSON.stringify(({LAYOUT})(id)) === want", arg=[reply_id, want],
                              timeout=TIMEOUT)
    assert layout(tab, reply_id) == expected


def reply_id_of(tab: Page) -> str:
    reply = tab.locator(".message.assistant").last
    reply.wait_for(timeout=TIMEOUT)
    return reply.get_attribute("data-id") or ""


def conversation_of(tab: Page) -> str:
    cid: str = tab.evaluate("decodeURIComponent(location.hash.slice(1))")
    return cid


def stored_calls(server: Server, cid: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.url}/api/conversations/{cid}", headers=AUTH)
    answer.raise_for_status()
    return [message for message in answer.json()["messages"] if message["from"] == "tool"]


def block(tab: Page, call_id: str) -> Any:
    return tab.locator(f".tool-call[data-id='{call_id}']")


def pretty(value: Any) -> str:
    """What the page shows for JSON: indented by two, as JSON.stringify(value, null, 2) writes it."""
    return json.dumps(value, indent=2)


def test_a_call_streams_its_arguments_at_its_place_then_shows_its_result(
    open_tab: Callable[[str], Page], fake_provider: FakeProvider,
) -> None:
    arguments = {"expression": "6 * 7"}
    # Six words of text, the call's first piece, then its arguments three characters a piece: held after
    # the third piece, so the page shows arguments the model has only begun to write.
    fake_provider.script(tool_calls=[[{"text": "Let me work that out. "},
                                      {"name": "calculator", "arguments": arguments}]],
                         tokens=["It ", "is ", "42."], argument_chunk=3, hold_after=10)
    tab = open_tab("")
    send(tab, "What is six times seven?")
    reply_id = reply_id_of(tab)
    call_id = f"{reply_id}.t0.0"
    call = block(tab, call_id)
    written = json.dumps(arguments, separators=(",", ":"))[:9]   # three pieces of three characters
    expect(call).to_have_attribute("data-status", "pending", timeout=TIMEOUT)
    expect(call.locator(".tool-arguments")).to_have_text(written, timeout=TIMEOUT)
    expect(call).to_have_attribute("open", "")   # a live call shows what it is doing
    until_layout(tab, reply_id, [
        ["text", "Let me work that out."],
        ["calls", [{"id": call_id, "name": "calculator", "status": "pending", "arguments": written,
                    "outcome": None, "buttons": 0, "spinning": False}]],
        ["text", ""]])
    expect(call.locator("summary")).to_contain_text("calculator")
    expect(call.locator("summary")).to_contain_text("pending")
    shot(tab, "tools-streaming")

    fake_provider.release()
    expect(tab.locator(f"#m-{reply_id}")).to_have_attribute("data-status", "completed", timeout=TIMEOUT)
    expect(call).to_have_attribute("data-status", "completed")
    result = {"expression": "6 * 7", "result": 42}
    until_layout(tab, reply_id, [
        ["text", "Let me work that out."],
        ["calls", [{"id": call_id, "name": "calculator", "status": "completed", "arguments": pretty(arguments),
                    "outcome": pretty(result), "buttons": 0, "spinning": False}]],
        ["text", "It is 42."]])
    # An ended call folds away to one line with its outcome; its summary opens it again (the keyboard too).
    expect(call).not_to_have_attribute("open", "")
    expect(call.locator(".tool-preview")).to_have_text("→ " + json.dumps(result, separators=(",", ":")))
    call.locator("summary").focus()
    tab.keyboard.press("Enter")
    expect(call.locator(".tool-outcome pre")).to_be_visible()
    expect(call.locator(".tool-outcome .tool-label")).to_have_text("Result")
    shot(tab, "tools-completed")
    # The model read the call's result before writing the rest.
    tool_turns = [m for m in fake_provider.requests()[-1]["messages"] if m["role"] == "tool"]
    assert [json.loads(m["content"]) for m in tool_turns] == [result]


def test_approve_and_deny_from_the_page_and_the_buttons_go_in_every_tab(
    open_tab: Callable[[str], Page], tool_server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tool_calls=[[{"text": "Tidying up. "},
                                      {"name": "delete_file", "arguments": {"path": "/tmp/old.txt"}},
                                      {"name": "delete_file", "arguments": {"path": "/tmp/keep.txt"}}]],
                         tokens=["Done."])
    one = open_tab("")
    send(one, "Tidy my temp folder")
    reply_id = reply_id_of(one)
    approved, denied = f"{reply_id}.t0.0", f"{reply_id}.t0.1"
    for call_id in (approved, denied):
        expect(block(one, call_id)).to_have_attribute("data-status", "awaiting_approval", timeout=TIMEOUT)
    other = open_tab(conversation_of(one))   # joins while both wait
    for tab in (one, other):
        for call_id in (approved, denied):
            expect(block(tab, call_id).get_by_role("button", name="Approve")).to_be_visible(timeout=TIMEOUT)
            expect(block(tab, call_id).get_by_role("button", name="Deny")).to_be_visible()
    assert layout(one, reply_id) == layout(other, reply_id)
    expect(block(one, approved).get_by_role("button", name="Approve the delete_file call")).to_be_visible()
    shot(one, "tools-awaiting-approval")

    block(one, approved).get_by_role("button", name="Approve").click()
    for tab in (one, other):
        expect(block(tab, approved)).to_have_attribute("data-status", "completed", timeout=TIMEOUT)
        expect(block(tab, approved).locator(".tool-approval")).to_have_count(0)
        expect(block(tab, denied)).to_have_attribute("data-status", "awaiting_approval")
    expect(block(other, denied).get_by_role("button", name="Deny")).to_be_visible()

    block(other, denied).get_by_role("button", name="Deny").click()
    for tab in (one, other):
        expect(block(tab, denied)).to_have_attribute("data-status", "denied", timeout=TIMEOUT)
        expect(block(tab, denied).locator(".tool-approval")).to_have_count(0)
        expect(tab.locator(f"#m-{reply_id}")).to_have_attribute("data-status", "completed", timeout=TIMEOUT)
    expected = [
        ["text", "Tidying up."],
        ["calls", [{"id": approved, "name": "delete_file", "status": "completed",
                    "arguments": pretty({"path": "/tmp/old.txt"}), "outcome": pretty({"deleted": "/tmp/old.txt"}),
                    "buttons": 0, "spinning": False},
                   {"id": denied, "name": "delete_file", "status": "denied",
                    "arguments": pretty({"path": "/tmp/keep.txt"}), "outcome": "denied by the user",
                    "buttons": 0, "spinning": False}]],
        ["text", "Done."]]
    until_layout(one, reply_id, expected)
    until_layout(other, reply_id, expected)
    calls = stored_calls(tool_server, conversation_of(one))
    assert [(c["id"], c["status"]) for c in calls] == [(approved, "completed"), (denied, "denied")]
    tool_turns = [m["content"] for m in fake_provider.requests()[-1]["messages"] if m["role"] == "tool"]
    assert tool_turns == ['{"deleted":"/tmp/old.txt"}', "denied by the user"], "the model read both answers"


def test_stop_on_the_reply_ends_a_running_call_cancelled(
    open_tab: Callable[[str], Page], tool_server: Server, fake_provider: FakeProvider,
) -> None:
    # Twenty seconds, a tenth at a time: long enough to be stopped, with progress to show meanwhile.
    fake_provider.script(tool_calls=[[{"text": "Waiting a while. "},
                                      {"name": "slow_wait", "arguments": {"seconds": 20}}]], tokens=["never written"])
    tab = open_tab("")
    send(tab, "Wait for me")
    reply_id = reply_id_of(tab)
    call = block(tab, f"{reply_id}.t0.0")
    expect(call).to_have_attribute("data-status", "running", timeout=TIMEOUT)
    expect(call.locator("summary .spinner")).to_be_visible()
    expect(call).to_have_attribute("aria-busy", "true")
    expect(call.locator(".tool-progress")).to_contain_text("1/10 · waited 1 of 10", timeout=TIMEOUT)
    expect(call.get_by_role("progressbar", name="Progress of slow_wait")).to_have_attribute("value", "1")
    shot(tab, "tools-running")

    tab.locator(f"#m-{reply_id}").get_by_role("button", name="Stop").click()
    expect(call).to_have_attribute("data-status", "cancelled", timeout=TIMEOUT)
    expect(call.locator(".spinner")).to_have_count(0)
    expect(call).to_have_attribute("aria-busy", "false")
    expect(call.locator("summary")).to_contain_text("cancelled")
    expect(call.locator(".tool-progress")).to_be_hidden()
    expect(tab.locator(f"#m-{reply_id}")).to_have_attribute("data-status", "stopped", timeout=TIMEOUT)
    call.locator("summary").click()
    expect(call.locator(".tool-outcome .tool-label")).to_have_text("Cancelled")
    shot(tab, "tools-stopped")
    calls = stored_calls(tool_server, conversation_of(tab))
    assert [c["status"] for c in calls] == ["cancelled"]
    assert len(fake_provider.requests()) == 1, "a stopped reply does not call the model again"
    assert "never written" not in tab.locator(f"#m-{reply_id} .body").inner_text()


def test_two_tabs_show_the_same_calls_over_two_rounds_live_and_after_a_reload(
    open_tab: Callable[[str], Page], tool_server: Server, fake_provider: FakeProvider,
) -> None:
    one = open_tab("")
    fake_provider.script(tool_calls=[], tokens=["Ready."])
    send(one, "Warm up")   # a conversation the other tab watches before the calls start
    expect(one.locator(".message.assistant")).to_have_attribute("data-status", "completed", timeout=TIMEOUT)
    other = open_tab(conversation_of(one))
    fake_provider.script(tool_calls=[
        [{"text": "First the sums. "}, {"name": "calculator", "arguments": {"expression": "2 + 3"}},
         {"name": "calculator", "arguments": {"expression": "2 +* 3"}}],
        [{"text": "Then one more. "}, {"name": "calculator", "arguments": {"expression": "5 * 8"}}],
    ], tokens=["All ", "done."], argument_chunk=4, delay=0.01)
    send(one, "Do some sums")
    expect(one.locator(".message.assistant")).to_have_count(2, timeout=TIMEOUT)
    reply_id = one.locator(".message.assistant").last.get_attribute("data-id") or ""
    for tab in (one, other):
        expect(tab.locator(f"#m-{reply_id}")).to_have_attribute("data-status", "completed", timeout=TIMEOUT)
    seen = layout(one, reply_id)
    until_layout(other, reply_id, seen)
    assert [part[0] for part in seen] == ["text", "calls", "text", "calls", "text"]
    assert [part[1] for part in seen if part[0] == "text"] == ["First the sums.", "Then one more.", "All done."]
    first, second = seen[1][1], seen[3][1]
    assert [(c["id"], c["status"]) for c in first] == [(f"{reply_id}.t0.0", "completed"), (f"{reply_id}.t0.1", "error")]
    assert [(c["id"], c["status"]) for c in second] == [(f"{reply_id}.t1.0", "completed")]
    assert first[0]["outcome"] == pretty({"expression": "2 + 3", "result": 5})
    assert second[0]["outcome"] == pretty({"expression": "5 * 8", "result": 40})
    stored = {c["id"]: c for c in stored_calls(tool_server, conversation_of(one))}
    assert first[1]["outcome"] == stored[f"{reply_id}.t0.1"]["error"], "the tool's error, as the server has it"
    for shown in (*first, *second):
        assert json.loads(shown["arguments"]) == json.loads(stored[shown["id"]]["arguments"])
    # The calls are no messages: two questions and two replies, no version switcher on any of them.
    expect(one.locator("#messages article.message")).to_have_count(4)
    expect(one.locator(".message:visible .versions:visible")).to_have_count(0)
    one.reload()
    one.wait_for_selector("#connection.online")
    expect(one.locator(f"#m-{reply_id}")).to_have_attribute("data-status", "completed", timeout=TIMEOUT)
    until_layout(one, reply_id, seen)   # a page opened afterwards lays the reply out the same
    shot(other, "tools-two-rounds-other-tab")


def test_a_call_denied_elsewhere_loses_its_buttons_and_shows_the_reason(
    open_tab: Callable[[str], Page], tool_server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/x"}}]], tokens=["Ok."])
    accepted = httpx.post(f"{tool_server.url}/chat", json={"message": "remove x"}, headers=AUTH).json()
    cid, reply_id = accepted["conversationId"], accepted["assistantMessageId"]
    tab = open_tab(cid)
    call_id = f"{reply_id}.t0.0"
    expect(block(tab, call_id).get_by_role("button", name="Deny")).to_be_visible(timeout=TIMEOUT)
    answer = f"{tool_server.url}/api/conversations/{cid}/messages/{call_id}/deny"
    assert httpx.post(answer).status_code == 401, "without the key, no answer"
    assert httpx.post(answer, headers=AUTH, json={"reason": "not that one"}).status_code == 200
    expect(block(tab, call_id)).to_have_attribute("data-status", "denied", timeout=TIMEOUT)
    expect(block(tab, call_id).locator(".tool-approval")).to_have_count(0)
    expect(block(tab, call_id).locator(".tool-preview")).to_have_text("denied by the user: not that one")
    expect(tab.locator("#error")).to_be_hidden()


def test_a_call_the_model_got_wrong_shows_its_name_and_arguments_as_text(
    open_tab: Callable[[str], Page], fake_provider: FakeProvider,
) -> None:
    hostile = '<img src=x onerror="window.pwned = 1">'
    fake_provider.script(tool_calls=[[{"name": hostile, "arguments": "<script>window.pwned = 2</script>"}]],
                         tokens=["Sorry."])
    tab = open_tab("")
    send(tab, "Call something odd")
    reply_id = reply_id_of(tab)
    call = block(tab, f"{reply_id}.t0.0")
    expect(call).to_have_attribute("data-status", "error", timeout=TIMEOUT)
    expect(tab.locator(f"#m-{reply_id}")).to_have_attribute("data-status", "completed", timeout=TIMEOUT)
    expect(call.locator(".tool-name")).to_have_text(hostile)
    expect(call.locator(".tool-arguments")).to_have_text("<script>window.pwned = 2</script>")
    expect(call.locator(".tool-outcome .tool-label")).to_have_text("Error")
    assert "there is no tool" in (call.locator(".tool-outcome pre").text_content() or "")
    assert tab.locator("#messages img, #messages script").count() == 0
    assert tab.evaluate("window.pwned") is None
