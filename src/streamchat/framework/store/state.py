"""What handlers see of the store: plain key/value state grouped by scope, claims and reservations."""

from __future__ import annotations

from streamchat.framework.store.base import JSON, Store


class State:
    """Plain key/value state, grouped by scope, in the configured store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, scope: str, key: str) -> JSON | None:
        return await self._store.state_get(scope, key)

    async def set(self, scope: str, key: str, value: JSON) -> None:
        await self._store.state_set(scope, key, value)

    async def delete(self, scope: str, key: str) -> None:
        await self._store.state_delete(scope, key)

    async def get_group(self, scope: str) -> dict[str, JSON]:
        return await self._store.state_list(scope)

    async def claim(self, scope: str, key: str, value: JSON) -> JSON:
        """Set `value` unless the key has one; the value it holds now. Two callers at once: one wins."""
        return await self._store.state_claim(scope, key, value)

    async def reserve(self, scope: str, key: str, value: JSON, limit: int, fresh_since: float) -> bool:
        """Add `key` while the scope has fewer than `limit` other entries with `"at"` ≥ `fresh_since`;
        never past `limit`, however many call at once."""
        return await self._store.state_reserve(scope, key, value, limit, fresh_since)
