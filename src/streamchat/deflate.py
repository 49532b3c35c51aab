"""permessage-deflate that holds zlib state only while it is used, and only as much as its messages need.

A zlib compressor made up front for every connection, as the websockets library makes it, holds its
window, hash table and block buffer (tens of KB) for as long as the socket is open, also while it
sends nothing. Here the compressor is made for the first message, sized for the messages it sends
(a window that holds the previous message, so a repeated prefix still becomes back-references),
made afresh when they grow past it or stay well under it, and dropped once the connection has
sent nothing for a while.

This is within the protocol: the client's decompressor keeps its own window (as large as the
negotiated `server_max_window_bits`, which is only the largest window a compressor may use), and a
fresh compressor refers to nothing older than itself, or to the previous message, given to it as
its dictionary: the same bytes the client's window ends with. Client messages (joins and leaves, a
few hundred bytes) are decompressed each on its own (`client_no_context_takeover`), so no
decompressor waits between them.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Sequence

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import CONT, CTRL_OPCODES, Frame
from websockets.typing import ExtensionParameter

#: The smallest window made (1 KB: a delta frame and the one before it).
SMALLEST_WINDOW_BITS = 10
#: Messages in a row that would fit a quarter of the window before the compressor is made smaller.
SHRINK_AFTER = 32
#: The Z_SYNC_FLUSH tail of every message, which the protocol leaves off the wire.
_SYNC_TAIL = b"\x00\x00\xff\xff"


def window_bits_for(size: int, largest: int) -> int:
    """The smallest window that holds a message of `size` bytes twice over (this one and the last)."""
    return max(SMALLEST_WINDOW_BITS, min(largest, (2 * size - 1).bit_length()))


class LazyDeflate(PerMessageDeflate):
    """The negotiated permessage-deflate, with a compressor made when needed and dropped when idle."""

    def __init__(self, negotiated: PerMessageDeflate, keeps_context: bool) -> None:
        # As negotiated, except that the base class is told not to make a compressor of its own.
        super().__init__(negotiated.remote_no_context_takeover, True, negotiated.remote_max_window_bits,
                         negotiated.local_max_window_bits, negotiated.compress_settings)
        self.keeps_context = keeps_context
        self.compressor: zlib._Compress | None = None
        self.window_bits = 0
        self.fits = self.small = 0
        self.small_in_a_row = 0
        #: The previous message, the dictionary of a compressor made afresh while messages flow.
        self.last = b""
        #: Messages sent so far; the idle check compares it with what it saw last time.
        self.sent = 0
        #: Called when a compressor is made (the connection then starts checking for idleness).
        self.on_compressor: Callable[[], None] | None = None

    def encode(self, frame: Frame) -> Frame:
        opcode, data = frame.opcode, frame.data
        if opcode in CTRL_OPCODES:
            return frame
        compressor = self.compressor
        if opcode is not CONT:  # a message starts: is the compressor there, and of the right size?
            size = len(data)
            if compressor is None or size > self.fits:
                compressor = self._make(size)
            elif size > self.small:
                self.small_in_a_row = 0
            else:
                self.small_in_a_row += 1
                if self.small_in_a_row >= SHRINK_AFTER:
                    compressor = self._make(size)
        assert compressor is not None
        compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if frame.fin:
            assert compressed.endswith(_SYNC_TAIL)
            compressed = compressed[:-4]
            self.sent += 1
            if not self.keeps_context:
                self.compressor = None
            elif opcode is CONT:  # only a message in one frame is kept whole (uvicorn sends no other kind)
                self.last = b""
            else:
                self.last = data if type(data) is bytes else bytes(data)
        return Frame(opcode, compressed, frame.fin, opcode is not CONT, frame.rsv2, frame.rsv3)

    def _make(self, size: int) -> zlib._Compress:
        """A compressor whose window holds a message of `size` bytes and the one before it (given as
        its dictionary), with the sizes of message it is made afresh for: larger than `fits`, or
        `SHRINK_AFTER` in a row at most `small` (a window a quarter the size would do)."""
        bits = window_bits_for(size, self.local_max_window_bits)
        # The hash table and block buffer grow with windows past 4 KB; zlib's default (memLevel 8)
        # would add 128 KB a compressor for hardly fewer bytes on these messages.
        settings = {**self.compress_settings, "memLevel": max(1, bits - 12)}
        if self.last:
            settings["zdict"] = self.last
        self.compressor = compressor = zlib.compressobj(wbits=-bits, **settings)
        self.window_bits, self.small_in_a_row = bits, 0
        self.fits = 1 << (bits - 1) if bits < self.local_max_window_bits else sys.maxsize
        self.small = 1 << (bits - 3) if bits - 2 >= SMALLEST_WINDOW_BITS else -1
        if self.keeps_context and self.on_compressor is not None:
            self.on_compressor()
        return compressor

    def release(self) -> bool:
        """Drop the compressor; True if there was one."""
        had = self.compressor is not None
        self.compressor = None
        self.last = b""
        return had


class LazyDeflateFactory(ServerPerMessageDeflateFactory):
    """Negotiates permessage-deflate as websockets does (windows up to what the client allows, 32 KB
    by default), and hands out `LazyDeflate` for it."""

    def __init__(self) -> None:
        # websockets negotiates as if the server took no context over, so that it makes no compressor
        # of its own (tens of KB allocated and freed per handshake); the answer is then put back as
        # the client asked.
        super().__init__(server_no_context_takeover=True, client_no_context_takeover=True)

    def process_request_params(self, params: Sequence[ExtensionParameter],
                               accepted_extensions: Sequence[Extension]) -> tuple[list[ExtensionParameter],
                                                                                  PerMessageDeflate]:
        asked = any(name == "server_no_context_takeover" for name, _ in params)
        response, negotiated = super().process_request_params(params, accepted_extensions)
        if not asked:
            response = [param for param in response if param[0] != "server_no_context_takeover"]
        return response, LazyDeflate(negotiated, keeps_context=not asked)
