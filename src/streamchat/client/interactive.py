"""The terminal session of `streamchat chat` without a message: a prompt, replies as they are written, commands.

Blocking code on purpose: `input()` keeps the terminal's line editing, and Ctrl-C arrives as a
KeyboardInterrupt where the session waits, which is what it means here: during a reply, stop
that reply and come back to the prompt; at the prompt, leave. Replies go to stdout, everything
else (conversation ids, statuses, errors) to stderr, so piping the output keeps just the text.
"""

from __future__ import annotations

import sys
from typing import TextIO

import httpx
from websockets.exceptions import WebSocketException

from streamchat.client.errors import StreamchatError
from streamchat.client.sync import SyncReplyStream, SyncStreamchatClient

#: What a server out of reach raises, through either client.
UNREACHABLE: tuple[type[Exception], ...] = (httpx.HTTPError, WebSocketException, ConnectionError, TimeoutError)

HELP = """\
Type a message and press Enter; the reply streams in as it is written.
Ctrl-C during a reply stops it; Ctrl-C or Ctrl-D at the prompt leaves.
  /new                 start a new conversation (with the next message)
  /switch <id>         continue the conversation with this id
  /regenerate          write the last reply again
  /list                recent conversations (* marks this one)
  /help                this help
  /quit                leave
A message that starts with / is sent by doubling it: //etc sends /etc."""

#: Conversations /list shows.
LISTED = 20


def show_reply(reply: SyncReplyStream, out: TextIO, err: TextIO) -> str:
    """Print a reply as it is written; Ctrl-C stops it on the server (a second one stops waiting).

    Returns its final status (`completed`, `stopped`, `error`), after saying any but `completed` on `err`.
    """
    restarts, interrupted = 0, False
    while True:
        try:
            for piece in reply:
                if reply.restarts != restarts:
                    out.write("\n[reply restarted]\n")
                    restarts = reply.restarts
                out.write(piece)
                out.flush()
            break
        except KeyboardInterrupt:
            if interrupted:
                reply.close()
                break
            interrupted = True
            try:
                reply.stop()
            except StreamchatError as refused:
                if refused.status != 409:  # 409: it ended on its own meanwhile
                    raise
    if reply.restarts != restarts:
        out.write("\n[reply restarted]\n")
    out.write("\n")
    out.flush()
    status = reply.status or "unknown"
    if status != "completed":
        err.write(f"[{status}: {reply.error}]\n" if reply.error else f"[{status}]\n")
        err.flush()
    return status


class Session:
    """One person at a terminal (or a script piping lines) talking to one server, a conversation at a time."""

    def __init__(self, client: SyncStreamchatClient, conversation_id: str | None = None, *,
                 stdin: TextIO | None = None, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.client = client
        self.conversation_id = conversation_id
        self.stdin = stdin or sys.stdin
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.tty = self.stdin.isatty()

    def run(self) -> int:
        """Read and answer lines until /quit, end of input or Ctrl-C at the prompt."""
        if self.tty:
            self.say(f"[streamchat at {self.client.base_url}: /help for commands, Ctrl-D to leave]")
        if self.conversation_id is not None:
            self.say(f"[conversation {self.conversation_id}]")
        while True:
            try:
                line = self.read()
            except (EOFError, KeyboardInterrupt):
                if self.tty:
                    self.say("")
                return 0
            try:
                if not self.handle(line.strip()):
                    return 0
            except StreamchatError as refused:
                self.say(f"streamchat: {refused}")
            except UNREACHABLE as error:
                self.say(f"streamchat: cannot reach {self.client.base_url}: {error}")
            except KeyboardInterrupt:
                self.say("[interrupted]")

    def read(self) -> str:
        """The next line; EOFError at the end of input."""
        if self.tty and self.stdin is sys.stdin:
            return input("> ")
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line

    def handle(self, line: str) -> bool:
        """Answer one line; False to leave."""
        if not line:
            return True
        if line.startswith("/") and not line.startswith("//"):
            return self.command(*line.split(maxsplit=1))
        self.talk(line.removeprefix("/"))
        return True

    def command(self, name: str, argument: str = "") -> bool:
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.say(HELP)
        elif name == "/new":
            self.conversation_id = None
            self.say("[new conversation: it starts with your next message]")
        elif name == "/switch":
            self.switch(argument.strip())
        elif name == "/regenerate":
            if self.conversation_id is None:
                self.say("[nothing to regenerate yet]")
            else:
                show_reply(self.client.regenerate(self.conversation_id), self.out, self.err)
        elif name == "/list":
            self.list_conversations()
        else:
            self.say(f"[unknown command {name}: /help lists them]")
        return True

    def talk(self, message: str) -> None:
        reply = self.client.send(message, self.conversation_id)
        if reply.conversation_id != self.conversation_id:
            self.conversation_id = reply.conversation_id
            self.say(f"[conversation {reply.conversation_id}]")
        show_reply(reply, self.out, self.err)

    def switch(self, conversation_id: str) -> None:
        if not conversation_id:
            self.say("[usage: /switch <conversationId>]")
            return
        messages = self.client.conversation(conversation_id)  # a 404 leaves the current one in place
        self.conversation_id = conversation_id
        self.say(f"[conversation {conversation_id}: {len(messages)} messages]")

    def list_conversations(self) -> None:
        for record in self.client.conversations(limit=LISTED):
            mark = "*" if record["conversationId"] == self.conversation_id else " "
            self.out.write(f"{mark} {record['conversationId']}  {record['updatedAt']}  {record['title']}\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()
