"""`upstream.send` answers as `ClientSession.request` does with the same session, on real sockets:
the same response, the same errors, a stale pooled connection retried only where aiohttp
retries it, and a try's total timeout bounding the answer's body too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from inferpool.gateway import upstream

Sender = Callable[
    [aiohttp.ClientSession, str, URL, bytes, aiohttp.ClientTimeout], Awaitable[aiohttp.ClientResponse]
]


async def by_send(
    session: aiohttp.ClientSession, method: str, url: URL, body: bytes, limits: aiohttp.ClientTimeout
) -> aiohttp.ClientResponse:
    headers = CIMultiDict({"content-type": "application/json", "x-request-id": "r1"})
    return await upstream.send(session, method, url, headers, body, limits)


async def by_session(
    session: aiohttp.ClientSession, method: str, url: URL, body: bytes, limits: aiohttp.ClientTimeout
) -> aiohttp.ClientResponse:
    headers = CIMultiDict({"content-type": "application/json", "x-request-id": "r1"})
    return await session.request(
        method, url, headers=headers, data=body, timeout=limits, allow_redirects=False
    )


SENDERS = pytest.mark.parametrize("sender", [by_send, by_session], ids=["send", "session.request"])
NO_TOTAL = aiohttp.ClientTimeout(total=None, connect=5, sock_read=None)


class Server:
    """A raw HTTP/1.1 server: each connection answers its first `answered` requests (echoing the
    request line, headers and body), then closes on the next one without answering."""

    def __init__(self, answered: int = 1_000, body_delay_s: float = 0.0) -> None:
        self.answered, self.body_delay_s = answered, body_delay_s
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for _ in range(self.answered):
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = b"echo:" + request
                writer.write(
                    b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Upstream: yes\r\n"
                    + b"Content-Length: %d\r\n\r\n" % len(answer)
                )
                if self.body_delay_s:
                    await writer.drain()
                    await asyncio.sleep(self.body_delay_s)
                if not request.startswith(b"HEAD "):  # (its answer's length, not its body)
                    writer.write(answer)
                await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next request on this connection: dropped
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    made = upstream.session(connect_timeout_s=5.0)
    yield made
    await made.close()


async def serving(server: Server) -> tuple[asyncio.Server, URL]:
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    return listening, URL(f"http://127.0.0.1:{port}/v1/completions?x=1")


@SENDERS
async def test_the_request_sent_and_the_answer_read(session: aiohttp.ClientSession, sender: Sender) -> None:
    server = Server()
    listening, url = await serving(server)
    async with listening:
        response = await sender(session, "POST", url, b'{"model": "m"}', NO_TOTAL)
        assert (response.status, response.reason) == (201, "Created")
        assert response.headers["X-Upstream"] == "yes"
        body = await response.read()
        response.release()
    sent = server.requests[0]
    assert body == b"echo:" + sent
    assert sent.startswith(b"POST /v1/completions?x=1 HTTP/1.1\r\n")
    assert sent.endswith(b'\r\n\r\n{"model": "m"}')
    lines = sent.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    names = sorted(line.split(b":")[0].lower() for line in lines)
    # a proxy adds no User-Agent or Accept-Encoding of its own; aiohttp adds Accept and Host
    assert names == [b"accept", b"content-length", b"content-type", b"host", b"x-request-id"]


async def test_send_sends_what_session_request_sends(session: aiohttp.ClientSession) -> None:
    server = Server()
    listening, url = await serving(server)
    async with listening:
        for sender in (by_send, by_session):
            response = await sender(session, "POST", url, b'{"model": "m", "prompt": "hi"}', NO_TOTAL)
            await response.read()
            response.release()
    assert server.requests[0] == server.requests[1]
    assert server.connections == 1  # the connection went back to the pool and was reused


@SENDERS
@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("POST", False)])
async def test_a_stale_pooled_connection_is_retried_only_for_an_idempotent_request(
    session: aiohttp.ClientSession, sender: Sender, method: str, retried: bool
) -> None:
    server = Server(answered=1)  # each connection drops its second request unanswered
    listening, url = await serving(server)
    async with listening:
        first = await sender(session, method, url, b"", NO_TOTAL)
        await first.read()
        first.release()  # pooled; the server drops the next request sent on it
        if retried:
            second = await sender(session, method, url, b"", NO_TOTAL)
            assert second.status == 201
            await second.read()
            second.release()
            assert server.connections == 2
        else:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await sender(session, method, url, b"", NO_TOTAL)


@SENDERS
async def test_a_refused_connection_is_a_connector_error(
    session: aiohttp.ClientSession, sender: Sender
) -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    with pytest.raises(aiohttp.ClientConnectorError):
        await sender(session, "POST", URL(f"http://127.0.0.1:{port}/v1/completions"), b"{}", NO_TOTAL)


@SENDERS
async def test_the_total_timeout_bounds_reading_the_body(
    session: aiohttp.ClientSession, sender: Sender
) -> None:
    server = Server(body_delay_s=30.0)  # headers at once, the body never in time
    listening, url = await serving(server)
    async with listening:
        limits = aiohttp.ClientTimeout(total=0.5, connect=5, sock_read=None)
        response = await sender(session, "POST", url, b"{}", limits)
        assert response.status == 201
        with pytest.raises(TimeoutError):
            await response.read()
        response.close()


@SENDERS
async def test_no_total_timeout_waits_for_a_slow_body(session: aiohttp.ClientSession, sender: Sender) -> None:
    server = Server(body_delay_s=1.0)
    listening, url = await serving(server)
    async with listening:
        response = await sender(session, "POST", url, b"{}", NO_TOTAL)
        assert (await response.read()).startswith(b"echo:")
        response.release()


@SENDERS
async def test_a_head_answer_has_no_body_to_wait_for(session: aiohttp.ClientSession, sender: Sender) -> None:
    """A HEAD answer announces a length and sends no body: it is read as empty at once, and its
    connection serves the next request."""
    server = Server()
    listening, url = await serving(server)
    async with listening:
        response = await sender(session, "HEAD", url, b"", NO_TOTAL)
        assert response.status == 201 and int(response.headers["Content-Length"]) > 0
        assert await asyncio.wait_for(response.read(), 5) == b""
        response.release()
        again = await sender(session, "POST", url, b"{}", NO_TOTAL)
        assert (await asyncio.wait_for(again.read(), 5)).startswith(b"echo:POST ")
        again.release()
    assert server.connections == 1
