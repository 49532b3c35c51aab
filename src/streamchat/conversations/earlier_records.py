"""Conversations kept before the catalog existed, taken into it once so none drops off the list.

Earlier versions kept each conversation's record in state (scope `conversations`) and searched
nothing. The first time a server finds the catalog's tables, it copies those records (with their
owners) and indexes their finished messages; a marker in state says it is done, so later starts,
and the other instances of a deployment, skip it. Copying twice adds nothing: a record whose id
the catalog already has is left as it is.
"""

from __future__ import annotations

import logging
import time

from streamchat.catalog import Catalog, Conversation
from streamchat.conversations.records import OWNERS
from streamchat.framework.store import Store

logger = logging.getLogger("streamchat.catalog")

EARLIER = "conversations"
DONE = ("catalog", "earlier-records")
FINISHED_WITH_TEXT = ("completed", "stopped")


async def take_in_earlier_records(store: Store, catalog: Catalog) -> None:
    if await store.state_get(*DONE) is not None:
        return
    records = await store.state_list(EARLIER)
    owners = await store.state_list(OWNERS)
    for conversation_id, record in records.items():
        owner = owners.get(conversation_id, {}).get("keyId")
        texts = {item.id: item.data["message"] for item in await store.list_items("conversation", conversation_id)
                 if isinstance(item.data.get("message"), str) and item.data["message"]
                 and item.data.get("status") in FINISHED_WITH_TEXT}
        await catalog.restore(Conversation(conversation_id, str(record.get("title", "")),
                                           str(record.get("createdAt", "")), str(record.get("updatedAt", "")),
                                           None if owner is None else str(owner)), texts)
    await store.state_set(*DONE, {"at": time.time(), "conversations": len(records)})
    if records:
        logger.info("earlier conversations taken into the catalog", extra={"conversations": len(records)})
