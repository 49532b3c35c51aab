"""How a call of a reply waited, told from stored facts alone (so every reading of a run agrees): for
the user's approval (an AG-UI interrupt), for the client's result (a front-end tool: a pending tool
call of the run), or not at all (it ran here, or failed its check).

A call of a tool that runs in the client (its item says `runsIn: "client"`) waited if it is
`awaiting_result` or its one answer was claimed (its result, or the stop that ended it); any other
call waited for approval if it was asked for one (replies/waiting.py).
"""

from __future__ import annotations

from typing import Literal

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.replies.waiting import waited_for_client
from streamchat.framework import Context

Waited = Literal["approval", "result"] | None


class CallWaits:
    def __init__(self, ctx: Context, thread_id: str) -> None:
        self.ctx = ctx
        self.thread_id = thread_id
        self._known: dict[str, Waited] = {}

    async def of(self, call_id: str, call: ConversationMessage) -> Waited:
        """How a call the model has written out waited (its check is behind it)."""
        if call_id not in self._known:
            self._known[call_id] = await self._of(call_id, call)
        return self._known[call_id]

    async def _of(self, call_id: str, call: ConversationMessage) -> Waited:
        if not await waited_for_client(self.ctx, self.thread_id, call_id, call):
            return None
        return "result" if call.runsIn == "client" else "approval"
