"""The `streamchat` console script against a real server."""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import FakeProvider, Server


def run_cli(*args: str, timeout: float = 60, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamchat", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, input=stdin)


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


#: `streamchat chat ARGS` started as a terminal starts it, with Ctrl-C and Ctrl-\ at their defaults. A
#: child inherits ignored signals, and this test process may have SIGINT and SIGQUIT ignored for a
#: moment (as C's system() does in a process while its command runs): a program started then ignored
#: Ctrl-C for good (seen in full runs: SigIgn held SIGINT).
AS_FROM_A_TERMINAL = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "signal.signal(signal.SIGQUIT, signal.SIG_DFL); "
                      "os.execv(sys.executable, [sys.executable, '-m', 'streamchat', 'chat', *sys.argv[1:]])")


class Terminal:
    """`streamchat chat` with no message as a real process: the test types lines into its stdin (a pipe)
    and reads what it prints (stdout and stderr in one stream, in the order written) as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = ""
        self.seen = 0
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")()
        while chunk := os.read(self.process.stdout.fileno(), 65536):
            with self.changed:
                self.output += decoder.decode(chunk)
                self.changed.notify_all()

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        """Wait for `pattern` (a regex) in what was printed since the last match; that match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while (match := regex.search(self.output, self.seen)) is None:
                left = deadline - time.monotonic()
                assert left > 0, f"no {pattern!r} in {self.output[self.seen:]!r} (exit: {self.process.poll()})"
                self.changed.wait(min(left, 0.1))
            self.seen = match.end()
            return match

    def wait_at_prompt(self, timeout: float = 5) -> None:
        """Until the program waits for a line: a signal a moment earlier would land in the command before."""
        wchan = Path(f"/proc/{self.process.pid}/wchan")  # what the main thread sleeps in (Linux)
        if not wchan.exists():
            time.sleep(0.5)
            return
        deadline = time.monotonic() + timeout
        while "pipe_read" not in wchan.read_text():
            assert time.monotonic() < deadline, "the program does not read its input"
            time.sleep(0.01)

    def threads(self) -> str:
        """Each thread's signal masks and what it sleeps in (Linux), to tell where a signal went."""
        lines = []
        for task in sorted(Path(f"/proc/{self.process.pid}/task").glob("*")):
            with contextlib.suppress(OSError):
                status = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines()
                              if ":\t" in line)
                wanted = {key: status.get(key, "").strip() for key in ("Name", "SigPnd", "SigBlk", "SigIgn", "SigCgt")}
                lines.append(f"{task.name}: {wanted} in {(task / 'wchan').read_text()}")
        return "\n".join(lines)

    def takes_interrupts(self) -> bool:
        """SIGINT neither ignored nor blocked in the main thread (an inherited mask or disposition would)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        masks = {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines()
                 if line.startswith(("SigBlk", "SigIgn"))}
        return not any(mask & (1 << (signal.SIGINT - 1)) for mask in masks.values())

    def close(self) -> int:
        if self.process.stdin is not None:
            self.process.stdin.close()
        return self.process.wait(timeout=15)


@pytest.fixture
def terminal(server: Server) -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        started.append(Terminal("--url", server.url, *args))
        return started[-1]

    yield start
    for each in started:
        if each.process.poll() is None:
            each.process.kill()
            each.process.wait()


def messages(server: Server, conversation_id: str) -> list[tuple[str, str, str]]:
    answer = httpx.get(f"{server.url}/api/conversations/{conversation_id}", params={"all": "true"}).json()
    return [(m["from"], m["status"], m["message"]) for m in answer["messages"]]


def test_interactive_chat_talks_regenerates_and_moves_between_conversations(
    server: Server, fake_provider: FakeProvider, terminal: Callable[..., Terminal]
) -> None:
    session = terminal()
    fake_provider.script(tokens=["first ", "answer"])
    session.type("hello")
    first = session.expect(r"\[conversation (\S+)\]\n").group(1)
    session.expect(r"first answer\n")
    fake_provider.script(tokens=["second ", "answer"])
    session.type("and again")
    session.expect(r"second answer\n")

    fake_provider.script(tokens=["regenerated"])
    session.type("/regenerate")
    session.expect(r"regenerated\n")
    assert messages(server, first) == [
        ("user", "completed", "hello"), ("assistant", "completed", "first answer"),
        ("user", "completed", "and again"), ("assistant", "completed", "second answer"),
        ("assistant", "completed", "regenerated")]

    session.type("/new")
    session.expect(r"\[new conversation")
    fake_provider.script(tokens=["fresh"])
    session.type("//slash and all")
    second = session.expect(r"\[conversation (\S+)\]\n").group(1)
    session.expect(r"fresh\n")
    assert second != first and messages(server, second) == [
        ("user", "completed", "/slash and all"), ("assistant", "completed", "fresh")]

    session.type("/switch no-such-conversation")
    session.expect(r"streamchat: 404 not_found")
    session.type(f"/switch {first}")
    session.expect(rf"\[conversation {first}: 5 messages\]")
    session.type("/list")
    session.type("/help")
    listed = session.expect(r"(?s)(.*?)Type a message").group(1).splitlines()
    assert any(re.fullmatch(rf"\* {first}  \S+  hello", line) for line in listed), listed  # * marks the current one
    assert any(line.startswith(f"  {second}  ") for line in listed), listed
    fake_provider.script(tokens=["back ", "here"])
    session.type("third")
    session.expect(r"back here\n")
    assert messages(server, first)[-2:] == [("user", "completed", "third"), ("assistant", "completed", "back here")]

    session.type("/help")
    session.expect(r"/switch <id>")
    session.type("/quit")
    assert session.close() == 0


def test_ctrl_c_during_a_reply_stops_it_and_the_session_goes_on(
    server: Server, fake_provider: FakeProvider, terminal: Callable[..., Terminal]
) -> None:
    # Held after three tokens and never released: only the Ctrl-C ends the reply.
    fake_provider.script(tokens=[f"slow{i} " for i in range(200)], hold_after=3)
    session = terminal()
    session.type("tell me a long story")
    cid = session.expect(r"\[conversation (\S+)\]\n").group(1)
    session.expect(r"slow2 ")
    assert session.takes_interrupts(), session.threads()
    session.process.send_signal(signal.SIGINT)
    try:
        session.expect(r"\n\[stopped\]\n")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{session.threads()}") from error
    [(_, _, _), (sender, status, text)] = messages(server, cid)
    assert (sender, status, text) == ("assistant", "stopped", "slow0 slow1 slow2 ")
    assert session.process.poll() is None, "Ctrl-C in a reply ends the reply, not the program"

    fake_provider.script(tokens=["still ", "here"], hold_after=None)
    session.type("are you there?")
    session.expect(r"still here\n")
    assert messages(server, cid)[-1] == ("assistant", "completed", "still here")

    # At the prompt, Ctrl-C leaves.
    session.type("/help")
    session.expect(r"/quit")
    session.wait_at_prompt()
    session.process.send_signal(signal.SIGINT)
    assert session.process.wait(timeout=15) == 0


def test_interactive_chat_answers_piped_lines_until_their_end(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=["piped ", "reply"])
    result = run_cli("chat", "--url", server.url, "-c", "piped-conversation", stdin="hi\n\n/regenerate\n/nope\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "piped reply\npiped reply\n"
    assert result.stderr == "[conversation piped-conversation]\n[unknown command /nope: /help lists them]\n"
    assert [m[2] for m in messages(server, "piped-conversation")] == ["hi", "piped reply", "piped reply"]
