"""The use cases on conversations, as one service every protocol's steps call.

Built per handler run from its `ctx` (`Conversations(ctx)`): its stream writes carry that run's
lease, and the settings and catalog are the services the app gave the runtime. Each use case that
writes is one unit of work (asking.ReplyOrder for those that ask for a reply) with the ownership
and deletion-mark rules built in, so a step only parses its request and shapes the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamchat.catalog import Catalog, Conversation
from streamchat.conversations.asking import ReplyOrder
from streamchat.conversations.branches import Branches, branch_in, tree_of
from streamchat.conversations.chat_settings import (
    ChatSettings,
    check_model,
    check_tools,
    given,
    read_settings,
    settings_in,
    write_settings,
)
from streamchat.conversations.deleting import after_writing, before_writing, delete_conversation, marks_in
from streamchat.conversations.events import ChatMessageEvent
from streamchat.conversations.exports import ExportedConversation
from streamchat.conversations.importing import bring_in
from streamchat.conversations.messages import FINISHED, ConversationMessage, utc_now
from streamchat.conversations.ownership import claim, require_owner
from streamchat.conversations.records import own_records
from streamchat.conversations.replies.stopping import stop_reply
from streamchat.conversations.results import ActiveBranchView, Edited, Regenerated, Sent
from streamchat.conversations.tool_calls import calls_by_reply
from streamchat.conversations.tree import Tree
from streamchat.framework import OUTAGES, Context, HttpError, Item, Principal
from streamchat.llm import ChatTurn
from streamchat.llm.model_set import ModelSet
from streamchat.settings import Settings
from streamchat.tools import ToolSet
from streamchat.tools.client_tools import ClientTool, request_tools

Items = list[Item[ConversationMessage]]


@dataclass(frozen=True, slots=True)
class ConversationView:
    """A conversation as its owner reads it: its record, every message, their tree, the active leaf."""

    record: Conversation | None
    items: Items
    tree: Tree
    active: str | None
    settings: ChatSettings

    def branch(self) -> Items:
        """The active branch's messages, root first, each reply followed by the tool calls it made."""
        if self.active is None:
            return []
        by_id = {item.id: item for item in self.items}
        calls = calls_by_reply(self.items)
        return [shown for message_id in self.tree.path_to(self.active)
                for shown in (by_id[message_id], *calls.get(message_id, ()))]


def no_such_conversation(cid: str) -> HttpError:
    return HttpError(404, "not_found", f"conversationId {cid!r}: no such conversation")


def no_such_message(cid: str, mid: str) -> HttpError:
    return HttpError(404, "not_found", f"messageId {mid!r}: no such message in conversation {cid!r}")


class Conversations:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.service(Settings)
        self.catalog = ctx.service(Catalog)
        self.models = ctx.service(ModelSet)
        self.stream = ctx.streams.conversation
        self.branches = Branches(ctx)

    async def read(self, principal: Principal | None, cid: str) -> tuple[Conversation | None, Items]:
        """The caller's conversation: its record (None for one kept without) and messages; 404 otherwise."""
        await require_owner(self.ctx, cid, principal)
        record = await self.catalog.get(cid)
        items = await self.stream.get_group(cid)
        if record is None and not items:
            raise no_such_conversation(cid)
        return record, items

    async def view(self, principal: Principal | None, cid: str) -> ConversationView:
        """The caller's conversation with its tree, active branch and settings; 404 otherwise."""
        record, items = await self.read(principal, cid)
        tree = tree_of(items)
        active = (await self.branches.current(cid)).resolve(tree)
        return ConversationView(record, items, tree, active, await read_settings(self.ctx.state, cid))

    async def send(self, principal: Principal | None, message: str, conversation_id: str | None = None, *,
                   earlier: Sequence[ChatTurn] = (), instructions: str | None = None,
                   details: Mapping[str, Any] | None = None, change: ChatSettings | None = None,
                   client_tools: Sequence[ClientTool] = ()) -> Sent:
        """What every protocol's "send" does: store the message (after `earlier` turns a client sent
        along, for a new conversation) on the active branch and an empty reply to it, make the reply the
        active leaf, and ask for it.

        An id that is another key's, or one being deleted, is a 404; the busy mode and the key's reply
        limit apply; a failure keeps nothing of it. `details` are kept beside the reply in the reply index;
        `change` (its given fields) changes the conversation's settings from this reply on;
        `client_tools` are offered to the model for this reply beside the conversation's tools.
        """
        existing = conversation_id is not None
        offered = request_tools(self.ctx.service(ToolSet), client_tools) or None
        cid = conversation_id or str(uuid.uuid4())
        user_id, reply_id = str(uuid.uuid4()), str(uuid.uuid4())
        if not await claim(self.ctx.state, cid, principal):
            raise no_such_conversation(cid)
        # One trip to the store before anything is written (the first token waits for it): the marks,
        # the settings and the active branch. A conversation that never branched is one straight line:
        # its new message names no parent and so follows the message before it (as every message kept
        # before the tree does), which needs no read of the conversation. One that has branched is read,
        # for the active leaf under which the message goes.
        own = await own_records(self.ctx.state, cid) if existing else {}
        record = branch_in(own)
        items = [] if record is None else await self.stream.get_group(cid)
        tree = tree_of(items)
        parent = None if record is None else record.resolve(tree)
        parent_known = record is not None or not existing
        chat = self._changed(settings_in(own), change)
        earlier_ids = [str(uuid.uuid4()) for _ in earlier]
        now = utc_now()
        async with ReplyOrder(self.ctx, self.settings, principal, cid, reply_id, existing=existing,
                              marks=marks_in(own) if existing else None) as order:
            if change is not None and given(change):
                await write_settings(self.ctx.state, cid, chat)
            for earlier_id, turn in zip(earlier_ids, earlier, strict=True):  # a new conversation's history
                await order.store(earlier_id, ConversationMessage(
                    message=turn.content, sender="user" if turn.role == "user" else "assistant", status="completed",
                    timestamp=now, parentId=parent))
                parent = earlier_id
            placed = {"parentId": parent} if parent_known or earlier else {}
            user = await order.store(user_id, ConversationMessage(
                message=message, sender="user", status="completed", timestamp=now, **placed))
            reply = await order.store(reply_id, self._new_reply(user_id, chat.model, now))
            await order.queue(ChatMessageEvent(
                message=message, conversationId=cid, assistantMessageId=reply_id, userMessageId=user_id,
                keyId=order.key_id, instructions=instructions, settings=chat, clientTools=offered), details)
            if record is not None:
                await self._announce(cid, tree_of([*items, user, reply]), reply_id)
            await self._list(cid, order.key_id, user_id, message, now, zip(earlier_ids, earlier, strict=True))
        self.ctx.logger.info("message received", extra={"conversationId": cid})
        return Sent(cid, user_id, reply_id)

    async def _settings_for(self, cid: str, existing: bool, change: ChatSettings | None) -> ChatSettings:
        """The conversation's settings with `change` applied (checked: an unknown model is a 422)."""
        return self._changed(await read_settings(self.ctx.state, cid) if existing else ChatSettings(), change)

    def _changed(self, current: ChatSettings, change: ChatSettings | None) -> ChatSettings:
        if change is None or not given(change):
            return current
        check_model(self.models, change.model)
        check_tools(self.models, self.ctx.service(ToolSet), current.changed_by(change), change)
        return current.changed_by(change)

    def _new_reply(self, parent: str, model: str | None, now: str) -> ConversationMessage:
        """An empty reply to `parent`, naming the model that will write it (one since removed from the
        models file too: the reply then ends with an error naming it)."""
        return ConversationMessage(message="", sender="assistant", status="created", timestamp=now, parentId=parent,
                                   model=model or self.models.default)

    async def _announce(self, cid: str, tree: Tree, leaf: str) -> None:
        """Tell every watcher of a branched conversation that a message extended its active branch."""
        try:
            await self.branches.extend(cid, tree, leaf)
        except OUTAGES as error:
            self.ctx.logger.warning("could not announce the active branch", extra={
                "conversationId": cid, "error": str(error)})

    async def _activate(self, cid: str, items: Items, leaf: str) -> None:
        """Make a new reply the active leaf. Inside the request's unit of work, so a delete overlapping it
        is finished after it; a backend away here leaves the branch as it was (the reply still comes)."""
        try:
            await self.branches.activate(cid, tree_of(items), leaf)
        except OUTAGES as error:
            self.ctx.logger.warning("could not switch the active branch", extra={
                "conversationId": cid, "error": str(error)})

    async def _list(self, cid: str, key_id: str | None, user_id: str, message: str, now: str,
                    earlier: Any) -> None:
        """The conversation list's record and search text, after the reply was asked for (the reply need
        not wait for them) and before the deletion marks are compared (a delete overlapping this write
        finishes after it). A failure here keeps the message (an error would make the client send it
        twice); the list catches up with the next message."""
        try:
            await self.catalog.touch(cid, key_id, user_id, message, now)
            for earlier_id, turn in earlier:
                await self.catalog.index(cid, earlier_id, turn.content)
        except OUTAGES as error:
            self.ctx.logger.warning("could not update the conversation list", extra={
                "conversationId": cid, "error": str(error)})

    async def regenerate(self, principal: Principal | None, cid: str, mid: str | None,
                         model: str | None = None, client_tools: Sequence[ClientTool] = ()) -> Regenerated:
        """A new reply beside assistant message `mid` (None: the active branch's last reply), answering
        the same user message, by the conversation's model or `model`; it becomes the active leaf.
        The old reply stays, whole, on its branch."""
        await require_owner(self.ctx, cid, principal)
        items = await self.stream.get_group(cid)
        tree = tree_of(items)
        by_id = {item.id: item for item in items}
        if mid is None:
            active = (await self.branches.current(cid)).resolve(tree)
            on_branch = [] if active is None else tree.path_to(active)
            mid = next((message_id for message_id in reversed(on_branch)
                        if by_id[message_id].data.sender == "assistant"), None)
            if mid is None:
                raise HttpError(404, "not_found", f"conversationId {cid!r}: no reply to regenerate")
        target = by_id.get(mid)
        if target is None:
            raise no_such_message(cid, mid)
        if target.data.sender != "assistant":
            raise HttpError(409, "conflict", f"messageId {mid!r}: only an assistant message can be regenerated")
        if target.data.status not in FINISHED:
            raise HttpError(409, "conflict", f"messageId {mid!r}: still {target.data.status}; stop it first")
        turn = next((by_id[message_id] for message_id in reversed(tree.path_to(mid)[:-1])
                     if by_id[message_id].data.sender == "user"), None)
        if turn is None:
            raise HttpError(409, "conflict", f"messageId {mid!r}: answers no user message")
        parent = tree.parent(mid)
        assert parent is not None  # it has a user message before it
        check_model(self.models, model)
        offered = request_tools(self.ctx.service(ToolSet), client_tools) or None
        chat = await read_settings(self.ctx.state, cid)
        reply_id = str(uuid.uuid4())
        async with ReplyOrder(self.ctx, self.settings, principal, cid, reply_id, existing=True) as order:
            reply = await order.store(reply_id, self._new_reply(parent, model or chat.model, utc_now()))
            await order.queue(ChatMessageEvent(
                message=turn.data.message, conversationId=cid, assistantMessageId=reply_id, userMessageId=turn.id,
                keyId=order.key_id, settings=chat, clientTools=offered))
            await self._activate(cid, [*items, reply], reply_id)
        return Regenerated(conversationId=cid, assistantMessageId=reply_id, userMessageId=turn.id)

    async def edit(self, principal: Principal | None, cid: str, mid: str, message: str,
                   model: str | None = None) -> Edited:
        """A new user message beside user message `mid` (same parent), and its reply, which becomes the
        active leaf; the edited message and everything under it stay."""
        await require_owner(self.ctx, cid, principal)
        items = await self.stream.get_group(cid)
        tree = tree_of(items)
        target = next((item for item in items if item.id == mid), None)
        if target is None:
            raise no_such_message(cid, mid)
        if target.data.sender != "user":
            raise HttpError(409, "conflict", f"messageId {mid!r}: only a user message can be edited "
                            "(regenerate a reply instead)")
        check_model(self.models, model)
        chat = await read_settings(self.ctx.state, cid)
        user_id, reply_id = str(uuid.uuid4()), str(uuid.uuid4())
        now = utc_now()
        key_id = None if principal is None else principal.key_id
        async with ReplyOrder(self.ctx, self.settings, principal, cid, reply_id, existing=True) as order:
            user = await order.store(user_id, ConversationMessage(
                message=message, sender="user", status="completed", timestamp=now, parentId=tree.parent(mid)))
            reply = await order.store(reply_id, self._new_reply(user_id, model or chat.model, now))
            await order.queue(ChatMessageEvent(
                message=message, conversationId=cid, assistantMessageId=reply_id, userMessageId=user_id,
                keyId=key_id, settings=chat))
            await self._activate(cid, [*items, user, reply], reply_id)
            await self._list(cid, key_id, user_id, message, now, ())
        return Edited(conversationId=cid, userMessageId=user_id, assistantMessageId=reply_id)

    async def switch(self, principal: Principal | None, cid: str, message_id: str) -> ActiveBranchView:
        """Make the branch through `message_id` active (its leaf: the one last active under it)."""
        await require_owner(self.ctx, cid, principal)
        marks = await before_writing(self.ctx, cid)
        tree = tree_of(await self.stream.get_group(cid))
        if message_id not in tree:
            raise no_such_message(cid, message_id)
        leaf, path = await self.branches.activate(cid, tree, message_id)
        await after_writing(self.ctx, cid, marks)
        return ActiveBranchView(activeMessageId=leaf, path=path)

    async def configure(self, principal: Principal | None, cid: str, title: str | None,
                        change: ChatSettings | None) -> tuple[Conversation, ChatSettings]:
        """Rename the conversation and/or change its settings (the given fields; a null resets one)."""
        await require_owner(self.ctx, cid, principal)
        record = await self.catalog.get(cid) if title is None else await self.catalog.rename(cid, title)
        if record is None:
            raise no_such_conversation(cid)
        settings = await self._settings_for(cid, True, change)
        if change is not None and given(change):
            marks = await before_writing(self.ctx, cid)
            await write_settings(self.ctx.state, cid, settings)
            await after_writing(self.ctx, cid, marks)
        self.ctx.logger.info("conversation changed", extra={"conversationId": cid})
        return record, settings

    async def stop(self, principal: Principal | None, cid: str, mid: str) -> Item[ConversationMessage]:
        """End a streaming or queued reply now, keeping its text; the item as it ended."""
        await require_owner(self.ctx, cid, principal)
        reply = await self.stream.get(cid, mid)
        if reply is None:
            raise no_such_message(cid, mid)
        if reply.data.status in FINISHED:
            raise HttpError(409, "conflict", f"messageId {mid!r}: already {reply.data.status}, nothing to stop")
        await self.stop_reply(cid, reply)
        self.ctx.logger.info("stop requested", extra={"conversationId": cid, "messageId": mid})
        return await self.stream.get(cid, mid) or reply

    async def stop_reply(self, cid: str, reply: Item[ConversationMessage]) -> None:
        """Stop a reply the caller may stop, wherever it runs (a cancel in another protocol's terms)."""
        await stop_reply(self.ctx, cid, reply)

    async def delete(self, principal: Principal | None, cid: str) -> int:
        """The conversation and everything of it, gone; how many messages went."""
        await require_owner(self.ctx, cid, principal)
        if not await self.stream.get_group(cid) and await self.catalog.get(cid) is None:
            raise no_such_conversation(cid)
        count = await delete_conversation(self.ctx, cid)
        self.ctx.logger.info("conversation deleted", extra={"conversationId": cid, "messages": count})
        return count

    async def bring_in(self, principal: Principal | None, exported: ExportedConversation) -> Conversation:
        """A conversation exported as JSON, stored again (importing.py)."""
        return await bring_in(self.ctx, self.catalog, principal, exported)
