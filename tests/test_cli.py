"""The `streamchat` console script against a real server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import FakeProvider, Server


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamchat", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_chat_prints_the_reply_live(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=["Streaming", " to", " the", " terminal", "."], delay=0.01)
    result = run_cli("chat", "hello", "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Streaming to the terminal.\n"
    assert "[conversation " in result.stderr


def test_chat_continues_a_conversation(server: Server, fake_provider: FakeProvider) -> None:
    first = run_cli("chat", "first", "--url", server.url, "-c", "cli-conversation")
    second = run_cli("chat", "second", "--url", server.url, "-c", "cli-conversation")
    assert first.returncode == second.returncode == 0
    assert [m["content"] for m in fake_provider.requests()[-1]["messages"][1:]] == [
        "first", "Hello! I am the fake provider.", "second"]
    listing = run_cli("conversations", "--url", server.url)
    assert "cli-conversation" in listing.stdout


def test_chat_reports_a_failed_reply(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(fail=[500] * 10)
    result = run_cli("chat", "doomed", "--url", server.url)
    assert result.returncode == 1
    assert "error" in result.stderr and "500" in result.stderr


def test_chat_reports_bad_input_and_unreachable_servers(server: Server) -> None:
    blank = run_cli("chat", "   ", "--url", server.url)
    assert blank.returncode == 1 and "message" in blank.stderr
    nowhere = run_cli("chat", "hi", "--url", "http://127.0.0.1:9")
    assert nowhere.returncode == 2 and "cannot reach" in nowhere.stderr


def test_models_lists_what_the_server_can_run(server: Server) -> None:
    result = run_cli("models", "--url", server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("* fake-model  [openai, ok]"), lines
    assert any(line.startswith("  smollm2-135m-instruct  [local, installed]") for line in lines), lines
    assert any(line.startswith("  gemma3-270m  [local, installed]") for line in lines), lines


@pytest.mark.parametrize("command", [[], ["serve"], ["chat"], ["conversations"], ["models"]])
def test_help_everywhere(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "usage: streamchat" in result.stdout
