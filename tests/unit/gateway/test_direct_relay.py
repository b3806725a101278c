"""The direct relay's turn batching against transports that close under it."""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp.streams import StreamReader

from inferpool.gateway.direct_relay import DirectRelay, TurnWrites
from inferpool.request.plane import Routed


class ClosableTransport:
    """Records writes; like uvloop's, raises on a write once fully closed."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        if self.closed:
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.written.append(data)


class CountingRouted:
    response_complete = False

    def __init__(self) -> None:
        self.fed: list[bytes] = []

    def response_data(self, piece: bytes) -> None:
        self.fed.append(piece)


def relay(transport: ClosableTransport, turn: TurnWrites) -> DirectRelay:
    content = cast(StreamReader, object())  # taking pieces and ending turns never touch it
    return DirectRelay(content, cast(asyncio.Transport, transport), cast(Routed, CountingRouted()), 200, turn)


def chunk(piece: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(piece), piece)


async def test_a_closed_client_does_not_hold_back_the_other_relays_of_its_turn() -> None:
    turn = TurnWrites()
    gone, kept = ClosableTransport(), ClosableTransport()
    first, second = relay(gone, turn), relay(kept, turn)
    for r in (first, second):  # one turn: each relay's first piece at once, the second queued
        assert r.take(b"a") and r.take(b"b")
    assert gone.written == kept.written == [chunk(b"a")]
    gone.closed = True  # the first client went away before the turn ended
    await asyncio.sleep(0)  # the turn ends
    assert gone.written == [chunk(b"a")]
    assert kept.written == [chunk(b"a"), chunk(b"b")]
    assert second.take(b"c")  # a new turn: written at once again
    assert kept.written[-1] == chunk(b"c")
