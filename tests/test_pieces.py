"""Pieces (framework/streams/pieces.py) read back exactly as the list of strings they were appended as."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from streamchat.framework.streams.pieces import CHUNK, Pieces

#: Empty pieces, multi-byte and astral characters, and ZWJ sequences split across pieces.
piece = st.text(alphabet=st.sampled_from(["a", " ", "é", "日", "👩", "\u200d", "💻", "\n"]), max_size=6)


@given(st.lists(piece, max_size=5 * CHUNK + 7), st.integers(min_value=0, max_value=6 * CHUNK))
def test_pieces_read_back_as_appended(pieces: list[str], start: int) -> None:
    kept = Pieces()
    for each in pieces:
        kept.append(each)
    assert len(kept) == len(pieces)
    assert list(kept) == pieces and list(kept.after(start)) == pieces[start:]
    assert kept.lengths() == [len(each) for each in pieces] and kept.text() == "".join(pieces)
    for index, each in enumerate(pieces):
        assert kept[index] == each
    assert list(Pieces(pieces)) == pieces


def test_a_long_text_costs_little_more_than_itself() -> None:
    """A piece costs its text and a few bytes, not a string object of its own (~50 bytes more)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = Pieces(f"w{index % 10} " for index in range(20 * CHUNK))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == 20 * CHUNK and held < 20 * CHUNK * (3 + 8), held


@given(st.lists(piece, max_size=5 * CHUNK + 7), st.data())
def test_pieces_let_go_before_a_start_still_read_back_from_it(pieces: list[str], data: st.DataObject) -> None:
    """A reader that moves its start forward a piece at a time (a resume buffer dropping its oldest) reads
    every piece from its start exactly, while the chunks it passed are let go."""
    kept = Pieces(pieces)
    for start in range(1, data.draw(st.integers(min_value=0, max_value=len(pieces))) + 1):
        kept.release_before(start)
        assert list(kept.after(start)) == pieces[start:]
        assert kept.text() == "".join(pieces[start // CHUNK * CHUNK:]), "whole chunks before the start are let go"
