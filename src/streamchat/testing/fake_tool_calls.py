"""How the fake provider answers with tool calls: the scripted rounds and the pieces they stream as.

A round is what one model turn answers: a list of calls (`{"name", "arguments", "id"?}`, the arguments
as JSON text, sent as written so a test can script malformed ones, or as an object) and texts
(`{"text"}`), streamed in order. A run of calls streams as OpenAI streams parallel calls: each call's
first piece brings its id and name, its arguments follow in small pieces, and the calls interleave.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter

_WORDS = re.compile(r"\s*\S+|\s+")


class ScriptedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: str | dict[str, Any] = ""
    #: The call's id; unscripted, `call_<stream>_<index>`, unique among the fake's streams.
    id: str | None = None


class ScriptedText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


_ROUNDS = TypeAdapter(list[list[ScriptedCall | ScriptedText]])


def scripted_rounds(value: Any) -> list[list[dict[str, Any]]]:
    """The `tool_calls` control, checked (pydantic's ValidationError names what is wrong), as plain dicts
    with the arguments as text."""
    rounds = _ROUNDS.validate_python(value)
    return [[_plain(item) for item in items] for items in rounds]


def _plain(item: ScriptedCall | ScriptedText) -> dict[str, Any]:
    if isinstance(item, ScriptedText):
        return {"text": item.text}
    arguments = item.arguments if isinstance(item.arguments, str) else orjson.dumps(item.arguments).decode()
    return {"name": item.name, "arguments": arguments, "id": item.id}


def rounds_done(messages: Sequence[Any]) -> int:
    """How many tool rounds this reply has had: the assistant calls since the user's last message."""
    done = 0
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") == "user":
            break
        if message.get("role") == "assistant" and message.get("tool_calls"):
            done += 1
    return done


def round_pieces(items: Sequence[dict[str, Any]], stream: int, size: int) -> tuple[list[str | dict[str, Any]],
                                                                                   list[dict[str, Any]]]:
    """The round's streamed pieces (text tokens as str, each call piece as one `delta.tool_calls` entry)
    and the calls it makes (`{"id", "name", "arguments"}`), with `size` characters of arguments a piece."""
    pieces: list[str | dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    run: list[list[dict[str, Any]]] = []
    for item in items:
        if "text" in item:
            pieces.extend(_interleaved(run))
            run = []
            pieces.extend(_WORDS.findall(item["text"]))
            continue
        index = len(calls)
        call = {"id": item["id"] or f"call_{stream}_{index}", "name": item["name"], "arguments": item["arguments"]}
        calls.append(call)
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["name"], "arguments": ""}}
        text = call["arguments"]
        run.append([head, *({"index": index, "function": {"arguments": text[at:at + size]}}
                            for at in range(0, len(text), max(size, 1)))])
    pieces.extend(_interleaved(run))
    return pieces, calls


def _interleaved(run: list[list[dict[str, Any]]]) -> list[str | dict[str, Any]]:
    """The pieces of calls streamed together: the first piece of each, then the second of each, ..."""
    longest = max((len(pieces) for pieces in run), default=0)
    return [pieces[step] for step in range(longest) for pieces in run if step < len(pieces)]
