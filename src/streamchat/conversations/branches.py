"""A conversation's active branch: kept in state, announced to every watcher as the `active-branch` event.

The record (tree.ActiveBranch: the active leaf, and the child last active at each branch point) is
the truth; the event is its announcement, sequenced with the items, so every tab, device and
instance shows the same branch and a watcher that resumes after a switch it missed still gets it.
Two switches at the same instant may announce in the other order than they wrote; each writer
reads the record again after its announcement and announces it once more if it changed meanwhile,
so the last announcement always matches the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.records import BRANCH_KEY, CONVERSATION, scope_of
from streamchat.conversations.tree import ActiveBranch, Node, Tree
from streamchat.framework import Context, Item
from streamchat.framework.store import JSON

#: The name of the stream event that announces a switch (a sticky event: it ends every SSE snapshot).
ACTIVE_BRANCH = "active-branch"


def tree_of(items: Sequence[Item[ConversationMessage]]) -> Tree:
    """The tree of a conversation's messages, in their creation order (the stream's order); tool calls
    hang off their replies outside the tree (tool_calls.py)."""
    return Tree.of(Node(item.id, item.data.parentId, item.data.parent_recorded) for item in items
                   if not item.data.is_tool_call)


def announcement(tree: Tree, leaf: str | None) -> dict[str, Any]:
    """The event's data: the active leaf and the branch from its root."""
    return {"activeMessageId": leaf, "path": [] if leaf is None else tree.path_to(leaf)}


def branch_in(records: dict[str, JSON]) -> ActiveBranch | None:
    """The active branch's record among a conversation's own records (records.own_records); None when it
    never branched."""
    record = records.get(BRANCH_KEY)
    return None if record is None else ActiveBranch.from_json(record)


class Branches:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.stream = ctx.streams.conversation

    async def current(self, cid: str) -> ActiveBranch:
        """The record as stored; an empty one for a conversation that never branched (its latest message is active)."""
        return await self.record(cid) or ActiveBranch()

    async def record(self, cid: str) -> ActiveBranch | None:
        """The record, or None for a conversation that never branched: it is one straight line, its latest
        message the active leaf, and nothing was ever announced for it."""
        record = await self.ctx.state.get(scope_of(CONVERSATION, cid), BRANCH_KEY)
        return None if record is None else ActiveBranch.from_json(record)

    async def extend(self, cid: str, tree: Tree, leaf: str) -> None:
        """A message sent under the active leaf of a conversation that has branched: its reply is the
        active leaf already, as the record reads it (the leaf under the recorded one, following the
        newest children), so nothing is written; it is announced, so the last announcement (which ends
        every new SSE snapshot) stays the active branch."""
        await self.stream.send_event(cid, ACTIVE_BRANCH, announcement(tree, leaf))

    async def activate(self, cid: str, tree: Tree, message_id: str) -> tuple[str, list[str]]:
        """Make the branch through `message_id` active (its leaf: the one last active under it), store it
        and announce it; the active leaf and its path."""
        switched = (await self.current(cid)).switch(tree, message_id)
        await self.ctx.state.set(scope_of(CONVERSATION, cid), BRANCH_KEY, switched.to_json())
        data = announcement(tree, switched.leaf)
        await self.stream.send_event(cid, ACTIVE_BRANCH, data)
        now = await self.current(cid)
        if now.to_json() != switched.to_json():  # another switch wrote after this one: announce the record
            latest = tree_of(await self.stream.get_group(cid))
            await self.stream.send_event(cid, ACTIVE_BRANCH, announcement(latest, now.resolve(latest)))
        assert switched.leaf is not None  # a switch to a message of the tree always has a leaf
        return switched.leaf, data["path"]
