"""A streamed answer written to the client from aiohttp's parser callback, not a reading task.

Through aiohttp's reader, each piece of a streamed answer is appended to the response's
`StreamReader`, wakes the relaying task (a future, a task step, the `async for` machinery) and
is written back out through `StreamResponse.write`. With 128 paced streams that per-piece
round trip was a third of the gateway's CPU per event and, as 128 pieces arrive together, what
the last of them waited behind (docs/benchmarks.md, "The streamed relay without a reading task").

While the client keeps up, `DirectRelay` takes each piece as the parser produces it: the
request's accounting sees it, and it goes to the client's transport as one HTTP/1.1 chunk; the
relaying task sleeps until the answer ends. A relay's first piece in a turn of the event loop
is written at once (one token at a time, as an engine streams, waits for nothing); its further
pieces in the same turn (a model server streaming faster than one piece per turn) are joined
and written when the turn ends (`TurnWrites`), one write for many as aiohttp's reader would
have buffered them. At the first sign of trouble the pieces are handed back to aiohttp's
reader, where the ordinary relay loop (with its flow control and error handling) takes over:
the client's transport is closing, or holds more than `WRITE_BUFFER_LIMIT` unsent bytes.
Upstream errors and the end of the answer reach the ordinary loop through the reader as
always, and so does an error of the request's accounting (raised where the loop would have
raised it). aiohttp's reader keeps `__slots__`, so the relay is found through the upstream
connection's protocol, and the reader's class is switched only while the relay runs.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.streams import StreamReader

from inferpool.request.plane import Routed

# Unsent bytes on the client's transport beyond which its flow control is needed (aiohttp's
# own writer waits for the transport to drain past the same amount).
WRITE_BUFFER_LIMIT = 1 << 16
_PROTOCOL_ATTRIBUTE = "_inferpool_direct_relay"
# The reader's fields this module keeps up to date; an aiohttp without them relays as before.
_READER_FITS = {"_protocol", "_cursor", "total_bytes", "_http_chunk_splits"} <= set(StreamReader.__slots__)


def usable(upstream_content: StreamReader, response: web.StreamResponse) -> bool:
    """Whether the answer can be relayed directly: aiohttp's own reader class, and a client
    response framed in HTTP/1.1 chunks (what this module writes) and not compressed."""
    return (
        _READER_FITS
        and type(upstream_content) is StreamReader
        and hasattr(upstream_content._protocol, "__dict__")
        and response.headers.get("Transfer-Encoding", "").lower() == "chunked"
        and not response.compression
    )


class TurnWrites:
    """The direct relays that wrote a piece in this turn of the event loop (one per data plane):
    when the turn ends, each writes what else it took in the turn, and may write at once again."""

    def __init__(self) -> None:
        self._relays: list[DirectRelay] = []

    def wrote(self, relay: DirectRelay) -> None:
        if not self._relays:
            asyncio.get_running_loop().call_soon(self._end)
        self._relays.append(relay)

    def _end(self) -> None:
        relays, self._relays = self._relays, []
        for relay in relays:
            relay.turn_ended()


class DirectRelay:
    """Relays one streamed answer from the parser callback until it ends or is handed back."""

    def __init__(
        self,
        upstream_content: StreamReader,
        transport: asyncio.Transport,
        routed: Routed,
        status: int,
        turn: TurnWrites,
    ) -> None:
        self._content = upstream_content
        self._transport = transport
        self._routed = routed
        self._status = status
        self._turn = turn
        self._wrote_this_turn = False
        self._pending: list[bytes] = []  # taken after this turn's first write, not yet written
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(self, response: web.StreamResponse) -> None:
        """Until the answer ended or was handed back; what remains (an error, the rest of the
        answer) is read from `upstream_content` as usual afterwards. `response` is prepared,
        its headers perhaps not yet sent."""
        content = self._content
        routed = self._routed
        # What arrived with the upstream's headers is already buffered: it goes first, through
        # aiohttp (with the client's headers), so that nothing overtakes it.
        sent = False
        while piece := content.read_nowait():
            routed.response_data(piece)
            await response.write(piece)
            sent = True
            if routed.response_complete:
                routed.finish(self._status)
        if not sent:
            await response.write(b"")  # the headers, before the chunks written behind them
        if content.at_eof():
            return
        protocol = content._protocol
        setattr(protocol, _PROTOCOL_ATTRIBUTE, self)
        content.__class__ = _DirectReader
        try:
            await self._ended
        finally:
            self._detach()

    def take(self, piece: bytes) -> bool:
        """One piece from the parser: accounted and written (or queued) for the client; False
        hands the answer back (the piece is then the reader's to buffer)."""
        transport = self._transport
        if transport.is_closing() or transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            return self._hand_back()
        try:
            self._routed.response_data(piece)
        except Exception as exc:
            return self._raise_in_task(exc)  # the piece not sent, as the ordinary loop does
        frame = b"%x\r\n%b\r\n" % (len(piece), piece)
        if self._wrote_this_turn:
            self._pending.append(frame)
        else:
            transport.write(frame)
            self._wrote_this_turn = True
            self._turn.wrote(self)
        if self._routed.response_complete:
            # The client is about to have `data: [DONE]`: a completed request even if it hangs
            # up before the upstream closes (as the ordinary loop records it).
            try:
                self._routed.finish(self._status)
            except Exception as exc:
                return self._raise_in_task(exc)  # the piece sent first, as the ordinary loop does
        return True

    def ended(self) -> None:
        """The answer ended, or failed (the reader holds the error): the task may go on."""
        self._flush()
        self._detach()
        if not self._ended.done():
            self._ended.set_result(None)

    def turn_ended(self) -> None:
        self._wrote_this_turn = False
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        # A client that went away since its pieces were taken gets none of them (uvloop raises
        # on a write to a closed transport, and this runs from the turn's end for every relay).
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()

    def _raise_in_task(self, exc: Exception) -> bool:
        """An error of the request's own bookkeeping: raised in the relaying task, where the
        ordinary loop would have raised it (from the reader), not into aiohttp's parser."""
        self.ended()
        self._content.set_exception(exc)
        return True

    def _hand_back(self) -> bool:
        self.ended()
        return False

    def _detach(self) -> None:
        """The reader is aiohttp's again, and the connection forgets this relay (at once, not
        when the task next runs: at the answer's end the connection returns to the pool)."""
        content = self._content
        content.__class__ = StreamReader
        protocol = content._protocol
        if getattr(protocol, _PROTOCOL_ATTRIBUTE, None) is self:
            delattr(protocol, _PROTOCOL_ATTRIBUTE)


def _relay_of(reader: StreamReader) -> DirectRelay | None:
    return getattr(reader._protocol, _PROTOCOL_ATTRIBUTE, None)


class _DirectReader(StreamReader):
    """aiohttp's reader while a `DirectRelay` runs: pieces go to the relay, not the buffer."""

    __slots__ = ()

    def feed_data(self, data: bytes, size: int = 0) -> bool:
        if not data:
            return False
        relay = _relay_of(self)
        if relay is not None and relay.take(data):
            # Counted as read: aiohttp keeps its chunk bookkeeping against these two.
            self.total_bytes += len(data)
            self._cursor += len(data)
            return False
        return StreamReader.feed_data(self, data, size)  # handed back: buffered for the loop

    def end_http_chunk_receiving(self) -> None:
        # Nothing is buffered, so there is no chunk boundary to keep, and no reader to wake
        # (aiohttp's version would wake the task for every chunk, and pause the connection
        # after 16,384 chunks that nobody read).
        pass

    def feed_eof(self) -> None:
        relay = _relay_of(self)
        if relay is not None:
            relay.ended()  # detaches first: the end of the answer returns the connection to the pool
        StreamReader.feed_eof(self)

    def set_exception(self, exc: BaseException, *args: BaseException) -> None:  # type: ignore[override]
        relay = _relay_of(self)
        if relay is not None:
            relay.ended()
        StreamReader.set_exception(self, exc, *args)
