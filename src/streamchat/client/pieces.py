"""What every reader of a reply's pieces shares: one pass, `async with`, and leaving early."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Self


class PieceReader:
    """`async for piece in reader` runs the subclass's `_follow` once; `aclose()` (or leaving an
    `async with`) closes what it reads from before the end."""

    def __init__(self) -> None:
        self._pieces: AsyncGenerator[str, None] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading (the reply itself goes on on the server) and close the connection."""
        if self._pieces is not None:
            await self._pieces.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        if self._pieces is None:
            self._pieces = self._follow()
        return await anext(self._pieces)

    def _follow(self) -> AsyncGenerator[str, None]:
        raise NotImplementedError
