"""Every record streamchat keeps for one conversation, named in one place, and the one purge.

A conversation is its group of the `conversation` stream (one item per message), its catalog
record (title, search text, usage), and these records in state. The scope names are the ones
earlier versions wrote, so conversations they kept read the same with no migration:

- `conversation_owners`, keyed by conversation: the API key id that owns it (ownership.py);
- `conversation_deletions:<conversation>`: deletes under way and their generation (deleting.py);
- `answering:<conversation>`, keyed by reply: the one reply it answers in reject mode (replies/answering.py);
- `reply_index`, keyed by reply: its conversation and protocol details (replies/index.py);
- `reply_pieces`, keyed by reply: the lengths of the pieces it was written in (replies/journal.py);
- `conversation_branch`, keyed by conversation: its active branch (branches.py);
- `conversation_settings`, keyed by conversation: its model and sampling settings (settings.py).

A key's running replies (`running_replies:<key id>`, replies/quota.py) belong to the key, not the
conversation: each is released when its reply ends, so a purge leaves them alone. The deletion marks
outlive the purge on purpose (a slow writer must still see that a delete came in between).
"""

from __future__ import annotations

from collections.abc import Iterable

from streamchat.catalog import Catalog
from streamchat.framework import State

OWNERS = "conversation_owners"
DELETIONS = "conversation_deletions"
ANSWERING = "answering"
REPLY_INDEX = "reply_index"
REPLY_PIECES = "reply_pieces"
RUNNING_REPLIES = "running_replies"
BRANCH = "conversation_branch"
SETTINGS = "conversation_settings"


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
    for reply_id in reply_ids:
        await state.delete(REPLY_INDEX, reply_id)
        await state.delete(REPLY_PIECES, reply_id)
    await state.delete(BRANCH, conversation_id)
    await state.delete(SETTINGS, conversation_id)
    await state.delete(OWNERS, conversation_id)
