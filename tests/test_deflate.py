"""permessage-deflate holding zlib state only while it sends (streamchat/deflate.py), checked against
the websockets library's own client decoder: every message must come out as it went in, whatever
compressor (size, made afresh, primed with the previous message, dropped while idle) encoded it."""

from __future__ import annotations

import orjson
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from websockets.frames import Frame, Opcode

from streamchat.deflate import SHRINK_AFTER, LazyDeflate, LazyDeflateFactory


def negotiated() -> tuple[LazyDeflate, PerMessageDeflate]:
    """Both ends as a browser's offer (`client_max_window_bits`) and the server's answer leave them."""
    client = ClientPerMessageDeflateFactory(client_max_window_bits=True)
    response, server = LazyDeflateFactory().process_request_params(client.get_request_params(), [])
    assert isinstance(server, LazyDeflate)
    decoder = client.process_response_params(response, [])
    assert isinstance(decoder, PerMessageDeflate)
    return server, decoder


def through(server: LazyDeflate, client: PerMessageDeflate, message: bytes) -> int:
    """Send one message; the client must read it back exactly. Its bytes on the wire."""
    encoded = server.encode(Frame(Opcode.TEXT, message))
    assert encoded.rsv1
    assert client.decode(encoded).data == message
    return len(encoded.data)


def whole_item(text: str) -> bytes:
    return orjson.dumps({"streamName": "conversation", "groupId": "g", "id": "i",
                         "event": {"type": "update", "data": {"id": "i", "status": "streaming", "message": text}}})


def delta(index: int) -> bytes:
    data = {"seq": index, "delta": f" t{index}"}
    return orjson.dumps({"streamName": "conversation", "groupId": "g", "id": "i",
                         "event": {"type": "event", "event": {"type": "delta", "data": data}}})


def test_a_compressor_is_made_for_the_first_message_and_dropped_when_released() -> None:
    server, client = negotiated()
    assert server.compressor is None
    through(server, client, delta(1))
    assert server.compressor is not None
    assert server.release()
    assert server.compressor is None and not server.release()
    through(server, client, delta(2))  # a fresh compressor after the client's window has history
    assert server.compressor is not None


def test_a_growing_item_stays_linear_on_the_wire_as_the_window_grows() -> None:
    """Whole items of a growing text (as plain Motia clients get them): each one is mostly the last one
    again, so its bytes are about the new text, also where the compressor is made afresh, larger."""
    server, client = negotiated()
    text, sent, windows = "", 0, set()
    for index in range(1500):
        text += f" t{index}"
        if index % 15 == 0:
            sent += through(server, client, whole_item(text))
            windows.add(server.window_bits)
    assert len(windows) > 2, windows
    assert sent < 1.3 * len(text), (sent, len(text))  # ~1.5x without the previous message as dictionary


def test_the_window_shrinks_back_for_small_messages() -> None:
    server, client = negotiated()
    through(server, client, whole_item("x" * 8000))
    large = server.window_bits
    for index in range(SHRINK_AFTER + 1):
        through(server, client, delta(index))
    assert server.window_bits < large


def test_messages_after_a_release_and_after_resizing_all_read_back() -> None:
    server, client = negotiated()
    for round_ in range(3):
        for index in range(40):
            through(server, client, delta(index) if index % 7 else whole_item("y" * (index * 50 * (round_ + 1))))
        server.release()


def test_the_answer_keeps_context_unless_the_client_asks_otherwise() -> None:
    plain = ClientPerMessageDeflateFactory(client_max_window_bits=True)
    response, server = LazyDeflateFactory().process_request_params(plain.get_request_params(), [])
    assert "server_no_context_takeover" not in dict(response)
    assert "client_no_context_takeover" in dict(response)
    assert isinstance(server, LazyDeflate) and server.keeps_context

    asking = ClientPerMessageDeflateFactory(server_no_context_takeover=True)
    response, server = LazyDeflateFactory().process_request_params(asking.get_request_params(), [])
    assert "server_no_context_takeover" in dict(response)
    assert isinstance(server, LazyDeflate) and not server.keeps_context
    client = asking.process_response_params(response, [])
    assert isinstance(client, PerMessageDeflate)
    for index in range(3):
        through(server, client, delta(index))
        assert server.compressor is None, "a compressor of its own for each message, none kept"
