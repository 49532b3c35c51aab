"""The chat page on the message tree, in a real browser (Debian's Chromium driven by Playwright): editing
a message, the version switcher ("2/3": a switch in one tab shows in another at once), the model picker and
the settings panel over a models file of two models, the model's name on each reply, and Continue on a
reply a token limit cut."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

import test_page
from conftest import FakeProvider, Server, ServerFactory, two_models_file
from test_page import chat, send, shot

# test_page.py's fixtures: the same Chromium, and a page that fails its test on any JavaScript error.
browser = test_page.browser
page = test_page.page

REPLY_TIMEOUT = 20_000   # ms: a bound on a hang, never a measure of speed


def shown(page: Page, selector: str) -> list[str]:
    """The texts of the messages the page shows (those on the active branch), top to bottom."""
    return [text.strip() for text in page.locator(f"#messages {selector}:visible .body").all_inner_texts()]


def wait_shown(page: Page, selector: str, texts: list[str]) -> None:
    expect(page.locator(f"#messages {selector}:visible .body")).to_have_text(texts, timeout=REPLY_TIMEOUT)


def detail(server: Server, cid: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/conversations/{cid}")
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def until_finished(server: Server, cid: str, message_id: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tree = httpx.get(f"{server.url}/api/conversations/{cid}", params={"all": "true"}).json()["messages"]
        if any(m["id"] == message_id and m["status"] in ("completed", "error", "stopped") for m in tree):
            return
        time.sleep(0.05)
    raise TimeoutError(f"reply {message_id} did not finish")


def history(fake: FakeProvider) -> list[str]:
    """What the provider's latest request gave the model to read, system prompt left out."""
    return [m["content"] for m in fake.requests()[-1]["messages"] if m["role"] != "system"]


def test_editing_a_message_shows_the_new_branch_and_the_old_one_stays(
    page: Page, server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tokens=["Four."])
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    send(page, "What is 2 + 2?")
    page.wait_for_selector(".message.assistant.completed", timeout=REPLY_TIMEOUT)
    original = page.locator(".message.user").first.get_attribute("data-id")

    page.locator(".message.user").get_by_role("button", name="Edit message").click()
    editor = page.locator(".message.user .editor textarea")
    expect(editor).to_have_value("What is 2 + 2?")
    editor.fill("What is 3 + 3, platypus?")
    shot(page, "branches-editing")
    fake_provider.script(tokens=["Six."])
    page.locator(".message.user .editor").get_by_role("button", name="Save").click()

    wait_shown(page, ".message.user", ["What is 3 + 3, platypus?"])
    wait_shown(page, ".message.assistant.completed", ["Six."])
    expect(page.locator(".message.user .editor")).to_have_count(0)
    assert history(fake_provider) == ["What is 3 + 3, platypus?"], "the edited branch alone is what the model reads"
    edited = page.locator(".message.user:visible")
    expect(edited.locator(".versions .position")).to_have_text("2/2")
    cid = page.evaluate("decodeURIComponent(location.hash.slice(1))")
    state = detail(server, cid)
    assert [m["message"] for m in state["messages"]] == ["What is 3 + 3, platypus?", "Six."]
    assert state["messages"][0]["siblings"][0] == original
    shot(page, "branches-edited")

    # The earlier question and its answer are still there, one click away.
    edited.get_by_role("button", name="Previous version").click()
    wait_shown(page, ".message.user", ["What is 2 + 2?"])
    wait_shown(page, ".message.assistant", ["Four."])
    expect(page.locator(".message.user:visible .versions .position")).to_have_text("1/2")
    expect(page.locator(".message.user:visible [data-action=previous]")).to_be_disabled()
    assert detail(server, cid)["activeMessageId"] == page.locator(".message.assistant:visible").get_attribute("data-id")

    # A search hit on the other branch opens that branch at the message.
    page.fill("#search", "platypus")
    page.locator(f"#results li[data-id='{cid}']").click()
    wait_shown(page, ".message.user", ["What is 3 + 3, platypus?"])
    expect(page.locator(".message.user:visible")).to_have_class(re.compile(r"\bfound\b"))
    wait_shown(page, ".message.assistant", ["Six."])


def test_switching_between_replies_shows_in_another_tab_at_once(
    browser: Browser, server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tokens=["The first answer."])
    first = chat(server, "Tell me something")
    cid = first["conversationId"]
    fake_provider.script(tokens=["The second answer."])
    again = httpx.post(f"{server.url}/api/conversations/{cid}/messages/{first['assistantMessageId']}/regenerate")
    assert again.status_code == 202, again.text
    second = again.json()["assistantMessageId"]
    until_finished(server, cid, second)

    context = browser.new_context(viewport={"width": 1100, "height": 700})
    errors: list[str] = []
    tabs = [context.new_page(), context.new_page()]
    for tab in tabs:
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(f"{server.url}/#{cid}")
        tab.wait_for_selector("#connection.online")
        wait_shown(tab, ".message.assistant", ["The second answer."])
        expect(tab.locator(".message.assistant:visible .versions .position")).to_have_text("2/2")
        tab.evaluate("window.__loadedOnce = true")   # gone if the page reloads
    one, other = tabs

    one.locator(".message.assistant:visible").get_by_role("button", name="Previous version").click()
    for tab in tabs:
        wait_shown(tab, ".message.assistant", ["The first answer."])
        expect(tab.locator(".message.assistant:visible .versions .position")).to_have_text("1/2")
        wait_shown(tab, ".message.user", ["Tell me something"])
    assert other.evaluate("window.__loadedOnce") is True, "the other tab switched live, without a reload"
    assert detail(server, cid)["activeMessageId"] == first["assistantMessageId"]
    shot(one, "branches-switched")
    shot(other, "branches-switched-other-tab")
    one.reload()   # the branch chosen is the conversation's: a reload opens on it, not on the latest reply
    one.wait_for_selector("#connection.online")
    wait_shown(one, ".message.assistant", ["The first answer."])

    other.locator(".message.assistant:visible").get_by_role("button", name="Next version").click()
    for tab in tabs:
        wait_shown(tab, ".message.assistant", ["The second answer."])
    assert detail(server, cid)["activeMessageId"] == second

    # A message sent now follows the branch shown, and the model reads exactly that branch.
    fake_provider.script(tokens=["Noted."])
    send(one, "And then?")
    for tab in tabs:
        wait_shown(tab, ".message.user", ["Tell me something", "And then?"])
        wait_shown(tab, ".message.assistant.completed", ["The second answer.", "Noted."])
    assert history(fake_provider) == ["Tell me something", "The second answer.", "And then?"]
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def two_models(tmp_path: Path, fast: FakeProvider, smart: FakeProvider) -> Path:
    return two_models_file(tmp_path, fast, smart, "max_tokens = 200")


def test_the_model_picker_and_the_settings_panel(
    page: Page, servers: ServerFactory, fake_provider: FakeProvider, second_fake: FakeProvider,
    tmp_path: Path,
) -> None:
    server = servers.start(STREAMCHAT_MODELS_FILE=str(two_models(tmp_path, fake_provider, second_fake)),
                           FAST_KEY="sk-fast")
    fake_provider.script(tokens=["Quick answer."])
    second_fake.script(tokens=["Careful answer."])
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    picker = page.locator("#model-picker")
    expect(picker.locator("option")).to_have_text(["fast (default)", "smart"])
    expect(picker).to_have_value("fast")

    # Chosen before the first message: the new conversation starts on it.
    picker.select_option("smart")
    send(page, "Which model are you?")
    page.wait_for_selector(".message.assistant.completed", timeout=REPLY_TIMEOUT)
    reply = page.locator(".message.assistant").last
    expect(reply.locator(".body")).to_have_text("Careful answer.")
    expect(reply.locator(".model-name")).to_have_text("smart")
    assert second_fake.requests()[-1]["model"] == "smart-model" and fake_provider.requests() == []
    cid = page.evaluate("decodeURIComponent(location.hash.slice(1))")
    assert detail(server, cid)["settings"]["model"] == "smart"
    expect(picker).to_have_value("smart")
    shot(page, "branches-model-picker")

    # Changed in the conversation: the next reply comes from the other model, each names its own.
    picker.select_option("fast")
    deadline = time.monotonic() + 10
    while detail(server, cid)["settings"]["model"] != "fast":
        assert time.monotonic() < deadline, "the picked model was not stored"
        time.sleep(0.05)
    send(page, "And now?")
    wait_shown(page, ".message.assistant.completed", ["Careful answer.", "Quick answer."])
    expect(page.locator(".message.assistant .model-name")).to_have_text(["smart", "fast"])
    assert fake_provider.requests()[-1]["model"] == "fast-model"

    # The settings panel: empty fields mean the model's defaults; saved ones reach the next reply.
    page.click("#settings-toggle")
    expect(page.locator("#temperature")).to_have_attribute("placeholder", "model default: 0.3")
    expect(page.locator("#max-tokens")).to_have_attribute("placeholder", "no limit")
    page.fill("#system-prompt", "Answer in one line.")
    page.fill("#temperature", "0.7")
    page.fill("#max-tokens", "64")
    shot(page, "branches-settings-panel")
    page.click("#settings-save")
    expect(page.locator("#settings-panel")).to_be_hidden()
    expect(page.locator("#settings-summary")).to_have_text("temperature 0.7 · max 64 tokens · system prompt")
    assert detail(server, cid)["settings"] == {"model": "fast", "systemPrompt": "Answer in one line.",
                                               "temperature": 0.7, "maxTokens": 64, "tools": None}
    send(page, "Once more")
    wait_shown(page, ".message.assistant.completed", ["Careful answer.", "Quick answer.", "Quick answer."])
    request = fake_provider.requests()[-1]
    assert (request["temperature"], request["max_tokens"]) == (0.7, 64)
    assert request["messages"][0] == {"role": "system", "content": "Answer in one line."}

    # Changed elsewhere (another tab, here the API): a reload shows the conversation's settings.
    changed = httpx.patch(f"{server.url}/api/conversations/{cid}", json={"model": "smart", "temperature": None})
    assert changed.status_code == 200, changed.text
    page.reload()
    page.wait_for_selector("#connection.online")
    expect(picker).to_have_value("smart")
    expect(page.locator("#settings-summary")).to_have_text("max 64 tokens · system prompt")
    page.click("#settings-toggle")
    expect(page.locator("#temperature")).to_have_value("")
    expect(page.locator("#max-tokens")).to_have_value("64")
    expect(page.locator("#max-tokens")).to_have_attribute("placeholder", "model default: 200")
    expect(page.locator("#system-prompt")).to_have_value("Answer in one line.")

    # "Model defaults" resets all three (the model stays).
    page.click("#settings-reset")
    expect(page.locator("#settings-summary")).to_have_text("")
    assert detail(server, cid)["settings"] == {"model": "smart", "systemPrompt": None, "temperature": None,
                                               "maxTokens": None, "tools": None}


def test_a_cut_reply_says_so_and_continues_on_its_branch(
    page: Page, server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tokens=["one ", "two ", "three ", "four ", "five"])
    page.goto(server.url)
    page.wait_for_selector("#connection.online")
    page.click("#settings-toggle")
    page.fill("#max-tokens", "3")
    page.click("#settings-save")
    send(page, "Count to five")
    page.wait_for_selector(".message.assistant.completed", timeout=REPLY_TIMEOUT)
    cut = page.locator(".message.assistant").last
    expect(cut.locator(".body")).to_have_text("one two three")
    expect(cut.locator(".cut")).to_contain_text("Cut off at the token limit")
    continue_button = cut.get_by_role("button", name="Continue")
    expect(continue_button).to_be_visible()
    shot(page, "branches-cut-reply")

    fake_provider.script(tokens=["four ", "five"])
    continue_button.click()
    wait_shown(page, ".message.user", ["Count to five", "Continue."])
    wait_shown(page, ".message.assistant.completed", ["one two three", "four five"])
    assert history(fake_provider) == ["Count to five", "one two three ", "Continue."]
    expect(continue_button).to_be_hidden()   # no longer the end of the branch
    expect(page.locator(".message.assistant").last.locator(".cut")).to_have_count(0)
    shot(page, "branches-continued")


def test_the_pages_tree_reads_items_as_the_server_does(page: Page, server: Server) -> None:
    """Items written before the tree (no `parentId`) follow the one before them; a parent the page does
    not hold makes a root; siblings are in creation order."""
    page.goto(server.url)
    tree = page.evaluate("""() => {
        const tree = new MessageTree([
            {id: "old1"}, {id: "old2"},                                  // before the tree: one straight branch
            {id: "u1", parentId: "old2"}, {id: "a1", parentId: "u1"},
            {id: "a2", parentId: "u1"}, {id: "u2", parentId: "old2"},     // a regeneration, an edit
            {id: "lost", parentId: "gone"}, {id: "root2", parentId: null},
        ]);
        return {path: tree.pathTo("a2"), siblings: tree.siblings("a2"), edits: tree.siblings("u2"),
                roots: tree.siblings("root2"), latest: tree.latestPath(), unknown: tree.pathTo("nope")};
    }""")
    assert tree == {"path": ["old1", "old2", "u1", "a2"], "siblings": ["a1", "a2"], "edits": ["u1", "u2"],
                    "roots": ["old1", "lost", "root2"], "latest": ["root2"], "unknown": []}
