"""The output items of a Responses API response, as OpenAI's API and SDK define them: the assistant's
text as `message` items, the server-run tool calls as `mcp_call` items, a call that waits for the
user as an `mcp_approval_request` item, and a call of a tool the client runs as a `function_call` item.

Ids come from the conversation, so a response rebuilt on any instance names its items the same way:
a round's text is `msg_<reply>` (round 0) or `msg_<reply>.<round>`, a call is `mcp_<call item id>`,
an approval request is the call item id itself (what `mcp_approval_response.approval_request_id`
and POST /api/conversations/{cid}/messages/{callId}/approve both take), and a function call is
`fc_<call item id>` with the call item id as its `call_id` (what `function_call_output.call_id` and
POST /api/conversations/{cid}/messages/{callId}/result take). A call's `output` is its result as JSON
text with sorted keys: the same text whichever store kept the result.
"""

from __future__ import annotations

from typing import Any

import orjson

from streamchat.conversations.messages import ConversationMessage
from streamchat.tools import ToolSet
from streamchat.tools.mcp.config import SEPARATOR

#: The `server_label` of the tools streamchat runs itself (built-ins and tool files).
OWN_LABEL = "streamchat"
MCP_SOURCE = "mcp:"


def message_id(reply_id: str, round_number: int) -> str:
    return f"msg_{reply_id}" if round_number == 0 else f"msg_{reply_id}.{round_number}"


def call_output_id(call_id: str) -> str:
    return f"mcp_{call_id}"


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """A message item; `text` None: just opened, no content part yet."""
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [] if text is None else [text_part(text)]}


def labelled(tools: ToolSet, name: str) -> tuple[str, str]:
    """(server_label, name) of a call of tool `name`: an MCP server's tool `{server}__{tool}` is `tool`
    on `server`; streamchat's own tools (and a name no source declares now) are on `streamchat`."""
    tool = tools.get(name)
    if tool is not None and tool.source.startswith(MCP_SOURCE):
        server = tool.source.removeprefix(MCP_SOURCE)
        return server, name.removeprefix(server + SEPARATOR)
    return OWN_LABEL, name


def call_status(call: ConversationMessage) -> str:
    """An ended call's item status: completed, failed (an error, or denied) or incomplete (cancelled)."""
    return {"completed": "completed", "cancelled": "incomplete"}.get(call.status, "failed")


def call_item(tools: ToolSet, call_id: str, call: ConversationMessage, *, approval: bool, arguments: str = "",
              ended: bool = False) -> dict[str, Any]:
    """The `mcp_call` item: opened (arguments still to come, in progress) or `ended` (with its output
    or error). `approval`: the call waited for the user (its request id is the call item id)."""
    server, name = labelled(tools, call.name or "")
    item: dict[str, Any] = {"id": call_output_id(call_id), "type": "mcp_call", "server_label": server, "name": name,
                            "arguments": arguments, "approval_request_id": call_id if approval else None,
                            "output": None, "error": None, "status": "in_progress"}
    if ended:
        item["status"] = call_status(call)
        if call.status == "completed":
            # Keys sorted: a store may keep an object's keys in another order than they were written.
            item["output"] = orjson.dumps(call.result, option=orjson.OPT_SORT_KEYS).decode()
        else:
            item["error"] = {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": why(call)}]}
    return item


def why(call: ConversationMessage) -> str:
    """What kept a call from a result, as its item says it."""
    if call.status == "cancelled":
        return call.error or "the call was cancelled"
    return call.error or "the call failed"


def approval_item(tools: ToolSet, call_id: str, call: ConversationMessage) -> dict[str, Any]:
    server, name = labelled(tools, call.name or "")
    return {"id": call_id, "type": "mcp_approval_request", "server_label": server, "name": name,
            "arguments": call.arguments or ""}


def function_call_id(call_id: str) -> str:
    return f"fc_{call_id}"


def function_call_item(call_id: str, call: ConversationMessage, *, whole: bool) -> dict[str, Any]:
    """The `function_call` item of a call the client runs: opened (no arguments yet) or `whole`."""
    return {"id": function_call_id(call_id), "type": "function_call", "call_id": call_id, "name": call.name or "",
            "arguments": (call.arguments or "") if whole else "", "status": "completed" if whole else "in_progress"}
