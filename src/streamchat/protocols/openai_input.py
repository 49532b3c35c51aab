"""The messages an OpenAI request carries (Responses `input`, Chat Completions `messages`) as chat turns.

System and developer messages become the reply's instructions; user and assistant messages are
turns; the last must be the user's (the message answered). Only text is taken: any other content
part is refused with a 400 naming it, rather than silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from streamchat.conversations.messages import checked_message
from streamchat.llm import ChatTurn
from streamchat.protocols.openai_errors import invalid

Role = Literal["system", "developer", "user", "assistant"]
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class InputMessage(BaseModel):
    """One message: `content` a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[ContentPart] | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    instructions: str | None
    earlier: list[ChatTurn]
    message: str


def as_turns(messages: Sequence[InputMessage], field: str, instructions: str | None = None) -> Conversation:
    system: list[str] = [instructions] if instructions else []
    turns: list[ChatTurn] = []
    for index, message in enumerate(messages):
        text = _text(message, f"{field}[{index}]")
        if message.role in ("system", "developer"):
            system.append(text)
        elif text.strip():
            turns.append(ChatTurn("user" if message.role == "user" else "assistant", text))
    if not turns or turns[-1].role != "user":
        raise invalid(field, "the last message must be the user's (the one to answer)")
    try:
        last = checked_message(turns[-1].content)
    except ValueError as error:
        raise invalid(field, str(error)) from None
    return Conversation("\n\n".join(system) or None, turns[:-1], last)


def _text(message: InputMessage, where: str) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts: list[str] = []
    for index, part in enumerate(message.content):
        if part.type not in TEXT_PARTS or part.text is None:
            raise invalid(f"{where}.content[{index}]", f"only text content is supported, not {part.type!r}")
        texts.append(part.text)
    return "".join(texts)
