"""Text written in pieces, each of which can still be read alone, at a few bytes a piece.

Why: a streamed reply comes a few characters a piece, and a Python string costs ~50 bytes besides
its text, so a list of the pieces held several times its text (a reply of 2,000 tokens kept
~150 KB of string objects in each of its holders: the resume buffer's run, the reply's journal).
Every CHUNK pieces are joined into one string here and each piece is found again by the lengths
kept beside it: appending stays O(1) (a join of CHUNK pieces every CHUNK pieces), reading the
pieces in order O(1) each.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

#: Pieces joined into one string at a time.
CHUNK = 32


class Pieces:
    """A sequence of strings as it was appended, kept as joined chunks and the pieces' lengths."""

    __slots__ = ("_chunks", "_lengths", "_tail")

    def __init__(self, pieces: Iterable[str] = ()) -> None:
        self._chunks: list[str] = []
        #: The lengths of the pieces already joined into chunks.
        self._lengths = array("I")
        self._tail: list[str] = []
        self.extend(pieces)

    def append(self, piece: str) -> None:
        tail = self._tail
        tail.append(piece)
        if len(tail) == CHUNK:
            self._chunks.append("".join(tail))
            self._lengths.extend(len(each) for each in tail)
            self._tail = []

    def extend(self, pieces: Iterable[str]) -> None:
        for piece in pieces:
            self.append(piece)

    def release_before(self, start: int) -> None:
        """Let go of the text of the chunk that ends at piece number `start`, if one does: the caller
        reads no piece before `start` any more (a resume buffer dropping its oldest pieces). O(1)."""
        number, within = divmod(start, CHUNK)
        if within == 0 and 0 < number <= len(self._chunks):
            self._chunks[number - 1] = ""

    def __len__(self) -> int:
        return len(self._lengths) + len(self._tail)

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return next(self.after(index))

    def after(self, start: int = 0) -> Iterator[str]:
        """The pieces from number `start` on, in order."""
        chunk_number, within = divmod(max(start, 0), CHUNK)
        for number in range(chunk_number, len(self._chunks)):
            chunk, first = self._chunks[number], number * CHUNK
            offset = sum(self._lengths[first:first + within])
            for length in self._lengths[first + within:first + CHUNK]:
                yield chunk[offset:offset + length]
                offset += length
            within = 0
        yield from self._tail[max(start - len(self._lengths), 0):]

    def __iter__(self) -> Iterator[str]:
        return self.after(0)

    def lengths(self) -> list[int]:
        return [*self._lengths, *(len(piece) for piece in self._tail)]

    def text(self) -> str:
        return "".join([*self._chunks, *self._tail])
