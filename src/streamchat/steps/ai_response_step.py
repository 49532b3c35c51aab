"""AI response: stream the model's reply into the assistant message, token by token.

Idempotent by assistantMessageId: a redelivered event for a reply that already finished does
nothing, and one for a reply cut off mid-way starts it again from empty. The reply can be
stopped (see stop_message_step.py): the provider stream closes and the partial text is kept.
If another run took the reply over (this instance was paused past its lease), the next write
raises `Fenced`: the provider stream closes and everything else is left to that run.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from streamchat.catalog import Spent, current_catalog
from streamchat.chat import answering, reply_journal
from streamchat.chat.deleting import overlapped, read_marks
from streamchat.chat.messages import FINISHED, ConversationMessage, ReplyUsage, utc_now
from streamchat.chat.reply_quota import release
from streamchat.chat.reply_telemetry import REPLIES, ReplyMeter, observed
from streamchat.framework import Context, EventConfig, Item
from streamchat.llm import ChatTurn, ProviderError, current_provider
from streamchat.settings import get_settings


class ChatMessageEvent(BaseModel):
    message: str
    conversationId: str = Field(min_length=1)
    assistantMessageId: str = Field(min_length=1)
    userMessageId: str | None = Field(
        default=None, description="The turn being answered; history stops there (regenerate answers an old one).")
    keyId: str | None = Field(default=None, description="The API key the reply counts against, if any.")
    instructions: str | None = Field(default=None, description="The system prompt for this reply alone "
                                     "(an OpenAI request's `instructions` or system messages).")


config = EventConfig(
    name="AiResponse",
    subscribes=["chat-message"],
    input=ChatMessageEvent,
    writes=["conversation"],
    max_retries=3,
    group_by="conversationId",
    description="Calls the model with streaming on and writes the growing reply into the conversation.",
)


def history(items: Sequence[Item[ConversationMessage]], until: str, budget: int) -> list[ChatTurn]:
    """Completed turns up to the item `until` (inclusive when it is a completed turn), newest kept first
    until `budget` characters are used. The newest turn (the user's question) is always kept.
    """
    earlier: list[ChatTurn] = []
    for item in items:
        if item.data.status == "completed" and item.data.message:
            earlier.append(ChatTurn("user" if item.data.sender == "user" else "assistant", item.data.message))
        if item.id == until:
            break
    kept: list[ChatTurn] = []
    used = 0
    for turn in reversed(earlier):
        if kept and used + len(turn.content) > budget:
            break
        kept.append(turn)
        used += len(turn.content)
    kept.reverse()
    return kept


async def handler(data: ChatMessageEvent, ctx: Context) -> None:
    """Run the reply; once it has ended, let go of what it held.

    A run that raises has not ended the reply: the bus runs it again (a failed attempt, a backend
    away, a shutdown's hand-back), or another run has it (fenced), or it fails for good and
    `on_failure` ends it. Until then it still counts against its key and keeps its conversation busy.
    """
    await respond(data, ctx)
    await reply_ended(data, ctx)


async def reply_ended(data: ChatMessageEvent, ctx: Context) -> None:
    """The reply has ended (completed, stopped, failed for good, or deleted): it no longer counts
    against its key, nor keeps its conversation busy."""
    await release(ctx, data.keyId, data.assistantMessageId)
    if get_settings().busy_mode == "reject":
        await answering.free(ctx, data.conversationId, data.assistantMessageId)


async def respond(data: ChatMessageEvent, ctx: Context) -> None:
    stream = ctx.streams.conversation
    cid, reply_id = data.conversationId, data.assistantMessageId
    async with ctx.stoppable(reply_id) as control:
        items = await stream.get_group(cid)
        current = next((item for item in items if item.id == reply_id), None)
        if current is None:
            ctx.logger.warning("reply message no longer exists; nothing to do", extra={"messageId": reply_id})
            return
        reply: ConversationMessage = current.data
        if reply.status in FINISHED:
            ctx.logger.info("reply already finished; skipping", extra={"messageId": reply_id, "status": reply.status})
            return

        settings = get_settings()
        until = data.userMessageId or _turn_before(items, reply_id)
        # Without STREAMCHAT_SYSTEM_PROMPT the provider opens with the system prompt that suits its model.
        prompt = data.instructions or settings.system_prompt
        system = [ChatTurn("system", prompt)] if prompt else []
        turns = [*system, *history(items, until, settings.history_chars)]
        meter = ReplyMeter()
        # The provider request starts now; the status write below overlaps its time to first token.
        replying = control.iterate(observed(current_provider(), turns, meter))
        await stream.set(cid, reply_id, reply.model_copy(update={"message": "", "status": "streaming"}))
        failure: ProviderError | None = None
        async with reply_journal.recording(ctx.state, reply_id) as journal:
            try:
                async for piece in replying:
                    journal.pieces.append(piece)
                    await stream.append(cid, reply_id, "message", piece)
                    if journal.flush_due():
                        await journal.flush()
            except ProviderError as error:
                failure = error
            final = _ending(reply, journal.text(), failure, control.stopped)
            if await finish(ctx, cid, reply_id, final, meter, data.keyId):
                await journal.keep()
        if failure is not None:
            ctx.logger.warning("provider failed", extra={"messageId": reply_id, "reason": failure.reason})
        else:
            ctx.logger.info("reply ended", extra={"messageId": reply_id, "status": final.status,
                                                  "chars": len(final.message)})


def _ending(reply: ConversationMessage, text: str, failure: ProviderError | None, stopped: bool) -> ConversationMessage:
    """The reply's last state: failed, stopped, empty (an error too) or completed."""
    if failure is not None:
        return reply.model_copy(update={"message": text, "status": "error", "error": failure.reason})
    if stopped:
        return reply.model_copy(update={"message": text, "status": "stopped"})
    if not text.strip():
        return reply.model_copy(update={"message": text, "status": "error",
                                        "error": "the model returned an empty reply"})
    return reply.model_copy(update={"message": text, "status": "completed"})


def _turn_before(items: Sequence[Item[ConversationMessage]], reply_id: str) -> str:
    """For events without userMessageId: the item just before the reply."""
    previous = reply_id
    for item in items:
        if item.id == reply_id:
            return previous
        previous = item.id
    return previous


async def finish(ctx: Context, cid: str, reply_id: str, final: ConversationMessage,
                 meter: ReplyMeter | None = None, key_id: str | None = None) -> bool:
    """Write the reply's last state (with its usage, when the model was called) and account for it;
    False when there is nothing to end: its conversation is being deleted or was, or a delete came
    while the write was made (then it is finished here too, so the write brings nothing back)."""
    seen = await read_marks(ctx, cid)
    if seen.running or await ctx.streams.conversation.get(cid, reply_id) is None:
        return False
    usage = None if meter is None else meter.usage()
    if usage is not None:
        final = final.model_copy(update={"usage": ReplyUsage.model_validate(usage)})
    await ctx.streams.conversation.set(cid, reply_id, final)
    REPLIES.labels(final.status).inc()
    ended = utc_now()
    catalog = current_catalog()
    spent = None if final.usage is None else Spent(reply_id, key_id, final.usage.model, final.usage.promptTokens or 0,
                                                    final.usage.completionTokens or 0)
    await catalog.index(cid, reply_id, final.message, active_at=ended, spent=spent)
    return not await overlapped(ctx, cid, seen)


async def on_failure(data: ChatMessageEvent, ctx: Context, error: BaseException) -> None:
    """Every retry failed: end the reply as an error so no client waits on it forever."""
    current = await ctx.streams.conversation.get(data.conversationId, data.assistantMessageId)
    if current is not None and current.data.status not in FINISHED:
        await finish(ctx, data.conversationId, data.assistantMessageId, current.data.model_copy(
            update={"status": "error", "error": "the reply failed after retries"}))
    await reply_ended(data, ctx)
