"""The reply runner: the prompt, the provider loop and the reply's last write, for the AI step.

Idempotent by reply id: a redelivered event for a reply that already finished does nothing, and
one for a reply cut off mid-way starts it again from empty. The reply can be stopped (see
stopping.py): the provider stream closes and the partial text is kept. If another run took the
reply over (this instance was paused past its lease), the next write raises `Fenced`: the
provider stream closes and everything else is left to that run.

What a reply holds (its place in its key's quota, its conversation's turn in reject mode) is let
go of only when it has really ended: a run that raises has not ended it (the bus runs it again, or
another run has it, or it fails for good and `failed` ends it).
"""

from __future__ import annotations

from typing import Any, cast

from streamchat.catalog import Catalog, Spent
from streamchat.conversations.branches import tree_of
from streamchat.conversations.chat_settings import read_settings
from streamchat.conversations.deleting import overlapped, read_marks
from streamchat.conversations.events import ChatMessageEvent
from streamchat.conversations.history import history
from streamchat.conversations.messages import FINISHED, ConversationMessage, ReplyUsage, utc_now
from streamchat.conversations.replies.calling import RoundCalls
from streamchat.conversations.replies.journal import ReplyJournals
from streamchat.conversations.replies.telemetry import REPLIES, ReplyMeter, observed
from streamchat.conversations.replies.waiting import go_on, let_go, remember
from streamchat.conversations.tool_calls import calls_of, reply_turns, round_start
from streamchat.framework import Context
from streamchat.llm import ChatTurn, ProviderError, Sampling, ToolCallDelta
from streamchat.llm.model_set import ModelSet
from streamchat.settings import Settings
from streamchat.tools import ToolSet
from streamchat.tools.client_tools import reply_tools
from streamchat.tools.registry import offered_tools


class ReplyRunner:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.service(Settings)
        self.catalog = ctx.service(Catalog)
        self.journals = ctx.service(ReplyJournals)
        self.models = ctx.service(ModelSet)
        self.tools = ctx.service(ToolSet)
        self.stream = ctx.streams.conversation

    async def run(self, data: ChatMessageEvent) -> None:
        """Run the reply's round; once the reply has ended, let go of what it held."""
        if await self._respond(data):
            await self.ended(data)

    async def ended(self, data: ChatMessageEvent) -> None:
        """The reply has ended (completed, stopped, failed for good, or deleted): it no longer counts
        against its key, nor keeps its conversation busy."""
        await let_go(self.ctx, data.keyId, data.conversationId, data.assistantMessageId)

    async def failed(self, data: ChatMessageEvent) -> None:
        """Every retry failed: end the reply as an error so no client waits on it forever."""
        current = await self.stream.get(data.conversationId, data.assistantMessageId)
        if current is not None and current.data.status not in FINISHED:
            await self.finish(data.conversationId, data.assistantMessageId, current.data.model_copy(
                update={"status": "error", "error": "the reply failed after retries"}))
        await self.ended(data)

    async def _respond(self, data: ChatMessageEvent) -> bool:
        """One model round of the reply: True once the reply has ended, False while it waits for the
        tool calls the round made (whichever ends the last of them asks for the next round)."""
        cid, reply_id = data.conversationId, data.assistantMessageId
        logger = self.ctx.logger
        async with self.ctx.stoppable(reply_id) as control:
            items = await self.stream.get_group(cid)
            current = next((item for item in items if item.id == reply_id), None)
            if current is None:
                logger.warning("reply message no longer exists; nothing to do", extra={"messageId": reply_id})
                return True
            reply: ConversationMessage = current.data
            if reply.status in FINISHED:
                logger.info("reply already finished; skipping", extra={"messageId": reply_id, "status": reply.status})
                return True
            tree = tree_of(items)
            until = data.userMessageId or tree.parent(reply_id) or reply_id
            chat = data.settings or await read_settings(self.ctx.state, cid)
            model = reply.model or self.models.default
            if model not in self.models.names():
                await self.finish(cid, reply_id, reply.model_copy(update={
                    "status": "error", "error": f"the model {model!r} is not configured on this server any more"}))
                return True
            calls = calls_of(items, reply_id)
            # A round is run again from its start: drop what a cut-off run of it (or of a later one) left.
            for call in calls:
                if (call.data.round or 0) >= data.round:
                    await self.stream.delete(cid, call.id)
            earlier_calls = [call for call in calls if (call.data.round or 0) < data.round]
            reply = reply.model_copy(update={"message": reply.message[:round_start(earlier_calls, data.round)]})
            # Without a system prompt the provider opens with the one that suits its model.
            prompt = data.instructions or chat.systemPrompt or self.settings.system_prompt
            system = [ChatTurn("system", prompt)] if prompt else []
            turns = [*system, *history(items, tree, until, self.settings.history_chars),
                     *reply_turns(reply, earlier_calls, before_round=data.round)]
            sampling = Sampling(temperature=chat.temperature, max_tokens=chat.maxTokens)
            tools = reply_tools(self.tools, data.clientTools)
            offered = offered_tools(tools, chat.tools, self.models.calls_tools(model),
                                    also=[tool.name for tool in data.clientTools or ()])
            meter = ReplyMeter()
            # The provider request starts now; the status write below overlaps its time to first token.
            replying = control.iterate(observed(self.models.provider(model), turns, meter, sampling, offered))
            await self.stream.set(cid, reply_id, reply.model_copy(update={"status": "streaming"}))
            round_calls = RoundCalls(self.ctx, cid, reply_id, data.round, tools,
                                     [spec["function"]["name"] for spec in offered])
            failure: ProviderError | None = None
            # Read before this run's journal is opened: while it is open, it is what this process reads.
            earlier_pieces = await self._earlier_pieces(reply_id, reply.message)
            async with self.journals.recording(self.ctx.state, reply_id) as journal:
                journal.pieces.extend(earlier_pieces)
                written = len(reply.message)
                try:
                    async for piece in replying:
                        if type(piece) is str:
                            journal.pieces.append(piece)
                            written += len(piece)
                            await self.stream.append(cid, reply_id, "message", piece)
                            if journal.flush_due():
                                await journal.flush()
                        else:
                            await round_calls.add(cast(ToolCallDelta, piece), written)
                    if round_calls and not control.stopped:
                        if data.round >= self.settings.tool_rounds:
                            raise ProviderError(f"the reply reached the limit of {self.settings.tool_rounds} "
                                                "tool rounds (STREAMCHAT_TOOL_ROUNDS)")
                        await remember(self.ctx, data)
                        ready = await round_calls.start(written, data.keyId)
                        await self.stream.set(cid, reply_id, reply.model_copy(update={
                            "message": journal.text(), "status": "streaming",
                            "usage": _summed(reply.usage, meter.usage())}))
                        await journal.keep()
                        logger.info("reply waits for tool calls", extra={"messageId": reply_id, "round": data.round})
                        if ready:
                            await go_on(self.ctx, cid, reply_id, data.round)
                        return False
                except ProviderError as error:
                    failure = error
                if round_calls:
                    await round_calls.cancel()
                final = _ending(reply, journal.text(), failure, control.stopped, meter.count.finish_reason)
                if await self.finish(cid, reply_id, final, meter, data.keyId):
                    await journal.keep()
            if failure is not None:
                logger.warning("provider failed", extra={"messageId": reply_id, "reason": failure.reason})
            else:
                logger.info("reply ended", extra={"messageId": reply_id, "status": final.status,
                                                  "chars": len(final.message)})
            return True

    async def _earlier_pieces(self, reply_id: str, text: str) -> list[str]:
        """The pieces the reply's earlier rounds were written in (their journal), so the reply's
        journal stays one list across rounds; one piece if the journal does not match the text."""
        if not text:
            return []
        pieces: list[str] = []
        start = 0
        for length in await self.journals.piece_lengths(self.ctx.state, reply_id):
            if start + length > len(text):
                break
            pieces.append(text[start:start + length])
            start += length
        return pieces if start == len(text) else [text]

    async def finish(self, cid: str, reply_id: str, final: ConversationMessage, meter: ReplyMeter | None = None,
                     key_id: str | None = None) -> bool:
        """Write the reply's last state (with its usage, when the model was called) and account for it;
        False when there is nothing to end: its conversation is being deleted or was, or a delete came
        while the write was made (then it is finished here too, so the write brings nothing back)."""
        seen = await read_marks(self.ctx, cid)
        if seen.running or await self.stream.get(cid, reply_id) is None:
            return False
        usage = None if meter is None else _summed(final.usage, meter.usage())
        if usage is not None:
            final = final.model_copy(update={"usage": usage})
        await self.stream.set(cid, reply_id, final)
        REPLIES.labels(final.status).inc()
        spent = None if final.usage is None else Spent(reply_id, key_id, final.usage.model,
                                                        final.usage.promptTokens or 0,
                                                        final.usage.completionTokens or 0)
        await self.catalog.index(cid, reply_id, final.message, active_at=utc_now(), spent=spent)
        return not await overlapped(self.ctx, cid, seen)


def _ending(reply: ConversationMessage, text: str, failure: ProviderError | None, stopped: bool,
            finish_reason: str | None) -> ConversationMessage:
    """The reply's last state: failed, stopped, empty (an error too) or completed (cut by a token
    limit, or not)."""
    if failure is not None:
        return reply.model_copy(update={"message": text, "status": "error", "error": failure.reason})
    if stopped:
        return reply.model_copy(update={"message": text, "status": "stopped"})
    if not text.strip():
        return reply.model_copy(update={"message": text, "status": "error",
                                        "error": "the model returned an empty reply"})
    return reply.model_copy(update={"message": text, "status": "completed",
                                    "finishReason": "length" if finish_reason == "length" else "stop"})


def _summed(earlier: ReplyUsage | None, now: dict[str, Any] | None) -> ReplyUsage | None:
    """A reply's usage over its rounds: the tokens and time of each model call added up; the time to
    first token is the first round's."""
    if now is None:
        return earlier
    latest = ReplyUsage.model_validate(now)
    if earlier is None:
        return latest

    def added(first: int | None, second: int | None) -> int | None:
        return None if first is None and second is None else (first or 0) + (second or 0)

    return latest.model_copy(update={
        "promptTokens": added(earlier.promptTokens, latest.promptTokens),
        "completionTokens": added(earlier.completionTokens, latest.completionTokens),
        "timeToFirstTokenMs": earlier.timeToFirstTokenMs if earlier.timeToFirstTokenMs is not None
        else latest.timeToFirstTokenMs,
        "durationMs": earlier.durationMs + latest.durationMs})
