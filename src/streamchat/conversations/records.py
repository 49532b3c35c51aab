"""Every record streamchat keeps for one conversation, named in one place, and the one purge.

A conversation is its group of the `conversation` stream (one item per message), its catalog
record (title, search text, usage), and these records in state. The scope names are the ones
earlier versions wrote, so conversations they kept read the same with no migration:

- `conversation_owners`, keyed by conversation: the API key id that owns it (ownership.py);
- `conversation:<conversation>`: its own records, read in one trip: the deletes under way and their
  generation (deleting.py), its settings (key `settings`, chat_settings.py) and its active branch
  (key `branch`, branches.py);
- `answering:<conversation>`, keyed by reply: the one reply it answers in reject mode (replies/answering.py);
- `reply_index`, keyed by reply: its conversation and protocol details (replies/index.py);
- `reply_pieces`, keyed by reply: the lengths of the pieces it was written in (replies/journal.py);
- `tool_calls:<conversation>`: what its replies' tool calls need between rounds (replies/waiting.py):
  the event that asked for each waiting reply, the one go-on of each round, the one answer to each
  approval;
- `feedback:<conversation>`, keyed by message: the user's rating of a reply (feedback.py);
- `chatkit:<conversation>`: where each reply's ChatKit stream is anchored in the conversation's
  sequence, both ways (protocols/chatkit_stream.py);
- `ag_ui_runs:<conversation>`, keyed by run id: what each AG-UI run of the thread shows (which stretch of
  which reply, and where its event ids start), so any instance can resume it (protocols/ag_ui_runs.py).

A key's running replies (`running_replies:<key id>`, replies/quota.py) belong to the key, not the
conversation: each is released when its reply ends, so a purge leaves them alone. The deletion marks
outlive the purge on purpose (a slow writer must still see that a delete came in between).
"""

from __future__ import annotations

from collections.abc import Iterable

from streamchat.catalog import Catalog
from streamchat.framework import State
from streamchat.framework.store import JSON

OWNERS = "conversation_owners"
#: The scope of a conversation's own records (`conversation:<id>`), and the keys of two of them.
CONVERSATION = "conversation"
SETTINGS_KEY = "settings"
BRANCH_KEY = "branch"
ANSWERING = "answering"
REPLY_INDEX = "reply_index"
REPLY_PIECES = "reply_pieces"
RUNNING_REPLIES = "running_replies"
TOOL_CALLS = "tool_calls"
FEEDBACK = "feedback"
CHATKIT = "chatkit"
AG_UI_RUNS = "ag_ui_runs"


async def own_records(state: State, conversation_id: str) -> dict[str, JSON]:
    """Every record of the conversation's own scope, in one read (what a send needs before it writes)."""
    return await state.get_group(scope_of(CONVERSATION, conversation_id))


def scope_of(kind: str, owner_id: str) -> str:
    """The scope of a record kept per conversation (or per key): `<kind>:<id>`."""
    return f"{kind}:{owner_id}"


async def purge(state: State, catalog: Catalog, conversation_id: str, reply_ids: Iterable[str]) -> None:
    """Remove what a conversation keeps beside its items, once they are gone: its catalog record,
    its busy mark, what is kept beside each reply, and who owned it (last, so it stays the owner's
    until nothing of it is left)."""
    await catalog.remove(conversation_id)
    answering = scope_of(ANSWERING, conversation_id)
    for reply_id in await state.get_group(answering):
        await state.delete(answering, reply_id)
    for kind in (TOOL_CALLS, FEEDBACK, CHATKIT, AG_UI_RUNS):
        scope = scope_of(kind, conversation_id)
        for key in await state.get_group(scope):
            await state.delete(scope, key)
    for reply_id in reply_ids:
        await state.delete(REPLY_INDEX, reply_id)
        await state.delete(REPLY_PIECES, reply_id)
    own = scope_of(CONVERSATION, conversation_id)
    await state.delete(own, BRANCH_KEY)
    await state.delete(own, SETTINGS_KEY)
    await state.delete(OWNERS, conversation_id)
