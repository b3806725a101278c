"""The compiled load generator (bench/loadgen/loadgen.c) against a small HTTP/1.1 server on
loopback that answers in awkward ways on purpose: bodies and chunk-size lines split across
TCP writes, chunk extensions and trailers, CRLF inside SSE, `Connection: close`, bodies that
end with the connection, 503s, answers cut short, answers that never come, a port nobody
listens on, and a slow server under an open loop (queueing must show in the latency).

Every assertion is a count or a lower bound, so a busy machine cannot fail it. Budget: ≤ 20 s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from inferpool.bench import native_loadgen

STAMP_AGE_NS = 50_000_000  # the server's stamps claim each event left 50 ms before it did
STAMPED_EVENTS = 3


async def _pieces(writer: asyncio.StreamWriter, *pieces: bytes) -> None:
    """Write each piece on its own (TCP_NODELAY, a pause between), so reads split where we say."""
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.002)


async def content_length(writer: asyncio.StreamWriter, n: int) -> bool:
    body = b'{"choices":[{"text":"' + b"x" * 200 + b'"}]}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    await _pieces(writer, head[:20], head[20:] + body[:50], body[50:])
    return False


def sse_body() -> bytes:
    events = [
        b'data: {"i":%d,"ts":%d}\n\n' % (i, time.time_ns() - STAMP_AGE_NS) for i in range(STAMPED_EVENTS - 1)
    ]
    events.append(b'data: {"i":9, "ts": %d}\r\n\r\n' % (time.time_ns() - STAMP_AGE_NS))  # CRLF, spaces
    events.append(b": a comment line, not an event\n\ndata: [DONE]\n\n")
    return b"".join(events)


async def sse(writer: asyncio.StreamWriter, n: int) -> bool:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = sse_body()
    cut = [0, 7, 60, len(body)]  # chunks that end inside lines and inside the `data:` prefix
    framed = [b"%x;ext=1\r\n%s\r\n" % (b - a, body[a:b]) for a, b in itertools.pairwise(cut)]
    stream = head + b"".join(framed) + b"0\r\nX-Trailer: y\r\n\r\n"
    # split the wire bytes at awkward points: inside the head, a size line, a CRLF, the trailer
    points = [10, len(head) + 1, len(head) + 12, len(stream) - 20, len(stream) - 3]
    await _pieces(writer, *(stream[a:b] for a, b in itertools.pairwise([0, *points, len(stream)])))
    return False


def mixed() -> Callable[[asyncio.StreamWriter, int], Awaitable[bool]]:
    async def answer(writer: asyncio.StreamWriter, n: int) -> bool:
        status = b"200 OK" if n % 2 == 0 else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 %s\r\nContent-Length: 2\r\n\r\n{}" % status)
        await writer.drain()
        return False

    return answer


async def close_after(writer: asyncio.StreamWriter, n: int) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()
    return True


async def until_eof(writer: asyncio.StreamWriter, n: int) -> bool:
    await _pieces(writer, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome", b" body")
    return True


async def cut_short(writer: asyncio.StreamWriter, n: int) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
    await writer.drain()
    return True


async def hang(writer: asyncio.StreamWriter, n: int) -> bool:
    await asyncio.sleep(30)
    return True


async def slow(writer: asyncio.StreamWriter, n: int) -> bool:
    await asyncio.sleep(0.1)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()
    return False


class Server:
    """Answers by request path; counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[asyncio.StreamWriter, int], Awaitable[bool]]] = {
            "/cl": content_length, "/sse": sse, "/mixed": mixed(), "/close": close_after,
            "/eof": until_eof, "/cut": cut_short, "/hang": hang, "/slow": slow,
        }  # fmt: skip
        self.counts: dict[str, int] = {}
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                path = head.split(b" ")[1].decode()
                n = self.counts[path] = self.counts.get(path, 0) + 1
                if await self.routes[path](writer, n - 1):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> Any:
    srv = Server()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.port = listener.sockets[0].getsockname()[1]
    yield srv
    listener.close()


async def loadgen(port: int, *args: str) -> dict[str, Any]:
    binary = native_loadgen.ensure_built()
    proc = await asyncio.create_subprocess_exec(
        str(binary), "--target", f"127.0.0.1:{port}", "--body", '{"model":"m"}', *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    errors = result["errors"]
    # every request sent either got an answer or is counted as exactly one kind of failure
    assert result["sent"] == result["completed"] + errors["io"] + errors["timeout"] + errors["parse"], result
    return result


async def test_content_length_answers_split_across_writes(server: Server) -> None:
    r = await loadgen(
        server.port, "--path", "/cl", "--mode", "closed", "--connections", "4", "--duration", "0.5"
    )
    assert r["ok"] > 0 and r["ok"] == r["completed"] == r["status"]["200"]
    assert sum(r["errors"].values()) == 0 and r["events"] == 0
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
    assert r["rps"] > 0 and r["mode"] == "closed" and r["connections"] == 4


async def test_chunked_sse_counts_events_and_times_stamped_chunks(server: Server) -> None:
    r = await loadgen(
        server.port, "--path", "/sse", "--mode", "closed", "--connections", "2", "--duration", "0.5"
    )
    assert r["ok"] > 0 and sum(r["errors"].values()) == 0
    assert r["events"] == r["ok"] * (STAMPED_EVENTS + 1)  # the stamped ones and [DONE]; comments are no event
    assert r["chunks"] == r["ok"] * STAMPED_EVENTS == r["chunk_delay_ms"]["n"]
    assert r["chunk_delay_ms"]["p50"] >= STAMP_AGE_NS / 1e6
    assert r["events_per_s"] > 0


async def test_statuses_are_counted_apart_from_successes(server: Server) -> None:
    r = await loadgen(
        server.port, "--path", "/mixed", "--mode", "closed", "--connections", "1", "--duration", "0.3"
    )
    assert set(r["status"]) == {"200", "503"}
    assert r["ok"] == r["status"]["200"] == r["latency_ms"]["n"]
    assert abs(r["status"]["200"] - r["status"]["503"]) <= 1 and r["completed"] == r["sent"]


async def test_connection_close_and_read_until_eof_reconnect_without_errors(server: Server) -> None:
    for path in ("/close", "/eof"):
        r = await loadgen(
            server.port, "--path", path, "--mode", "closed", "--connections", "2", "--duration", "0.3"
        )
        assert r["ok"] > 2, (path, r)  # more answers than connections: it reconnected
        assert sum(r["errors"].values()) == 0, (path, r)


async def test_answers_cut_short_and_never_sent_are_errors_not_crashes(server: Server) -> None:
    cut = await loadgen(
        server.port, "--path", "/cut", "--mode", "closed", "--connections", "2", "--duration", "0.3"
    )
    assert cut["ok"] == 0 and cut["errors"]["io"] > 0
    hung = await loadgen(server.port, "--path", "/hang", "--mode", "closed", "--connections", "2",
                         "--duration", "0.3", "--timeout", "0.3", "--drain", "1")  # fmt: skip
    assert hung["ok"] == 0 and hung["errors"]["timeout"] >= 2


async def test_a_refused_target_is_counted_and_the_run_still_reports() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        r = await loadgen(port, "--mode", "open", "--rate", "50", "--duration", "0.3", "--connections", "2",
                          "--connect-wait", "0.3", "--drain", "0.3")  # fmt: skip
    assert r["errors"]["connect"] > 0 and r["ok"] == 0
    assert r["sent"] == 0 and r["unsent"] == r["scheduled"] > 0


async def test_open_loop_latency_counts_from_the_intended_send_time(server: Server) -> None:
    # One connection, 100 ms per answer, a request due every 50 ms: requests wait for the connection,
    # and that wait is part of their latency (a closed loop would report ≈100 ms for every one).
    r = await loadgen(server.port, "--path", "/slow", "--mode", "open", "--rate", "20", "--duration", "1",
                      "--connections", "1", "--drain", "5")  # fmt: skip
    assert r["scheduled"] == 20 and r["ok"] == 20 and r["unsent"] == 0
    assert r["latency_ms"]["max"] >= 100 + 15 * 50  # the last ones waited behind the earlier ones
    assert r["max_pending"] >= 5
