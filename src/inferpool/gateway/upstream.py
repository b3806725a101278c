"""Sending one forwarded request upstream, on aiohttp's pool and HTTP/1.1 client, without the
per-request work of `ClientSession.request` that a proxy never uses.

`ClientSession.request` (aiohttp 3.14) also filters a cookie jar into a fresh cookie object,
looks for credentials in the URL and in .netrc, for proxies in the environment, follows
redirects, runs trace and middleware hooks, and copies the headers twice. The gateway's session
has no cookie jar, no auth, no proxy, no hooks and never follows a redirect: timed alone on the
bench machine, a forwarded request took 56–58 µs of client CPU through `ClientSession.request`
and 45–47 µs through `send` (docs/benchmarks.md). `send` keeps what a forwarded request does need, as
`ClientSession._request` does it: the session's connection pool and its connect timeout, a
per-try total timeout that also bounds reading the answer, one retry of an idempotent request
whose pooled connection the server had closed, aiohttp's exception types, and cleanup on every
path. It uses aiohttp's request, response and protocol objects directly, which is why
pyproject pins aiohttp's minor version: tests/unit/gateway/test_upstream.py holds `send` to
what `ClientSession.request` does with the same session, on a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import aiohttp
from aiohttp import hdrs
from aiohttp.client import IDEMPOTENT_METHODS
from aiohttp.client_exceptions import (
    ClientError,
    ClientOSError,
    ConnectionTimeoutError,
    ServerDisconnectedError,
)
from aiohttp.helpers import EMPTY_BODY_METHODS, TimeoutHandle
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict, istr
from yarl import URL

# The session's response-reading limits (aiohttp's defaults; the gateway sets none of its own)
_READ_BUFSIZE = 2**16
_MAX_LINE_SIZE = 8190
_MAX_FIELD_SIZE = 8190
_MAX_HEADERS = 128
# vLLM's API server (uvicorn) closes a connection idle for 5 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE); a
# pooled connection reused just as the server closes it is reset under the request (a 502 when
# no other endpoint can take it). Idle connections are dropped here first.
UPSTREAM_KEEPALIVE_S = 4.0
VLLM_KEEPALIVE_S = 5.0
# Headers aiohttp would add to a forwarded request that the client did not send: a proxy adds
# no User-Agent, Content-Type or Accept-Encoding of its own (aiohttp still adds Accept: */*).
SKIP_AUTO_HEADERS = ("User-Agent", "Content-Type", "Accept-Encoding")


class ForwardedRequest(aiohttp.ClientRequest):
    """aiohttp's request, with the session's skipped auto headers looked up in a table built once.

    aiohttp sorts the skip list into a new multidict and copies the request's headers to
    check them against it on every request (≈5 µs); the headers added are the same.
    """

    _SKIPPED = frozenset(map(istr, SKIP_AUTO_HEADERS))  # as the session keeps them
    _SKIPPED_TABLE: CIMultiDict[None] = CIMultiDict((name, None) for name in sorted(_SKIPPED))

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        skipped = self._SKIPPED
        if skip_auto_headers is None or skip_auto_headers != skipped:  # not the session's own
            super().update_auto_headers(skip_auto_headers)
            return
        self._skip_auto_headers = self._SKIPPED_TABLE  # read only, by aiohttp as by this method
        headers = self.headers
        for name, value in self.DEFAULT_HEADERS.items():
            if name not in headers and name not in skipped:
                headers[name] = value
        if hdrs.USER_AGENT not in headers and hdrs.USER_AGENT not in skipped:
            headers[hdrs.USER_AGENT] = SERVER_SOFTWARE


def session(connect_timeout_s: float) -> aiohttp.ClientSession:
    """A pooled upstream session for `send` and the P/D prefill leg (the gateway's, and the P/D
    sidecar's towards its decoder)."""
    connector = aiohttp.TCPConnector(
        limit=0, keepalive_timeout=UPSTREAM_KEEPALIVE_S, enable_cleanup_closed=True
    )
    return aiohttp.ClientSession(
        connector=connector,
        # No cookie jar: a proxy relays Set-Cookie to its client and keeps none of its own,
        # or one client's session cookie would ride along on every later request.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout_s),
        skip_auto_headers=SKIP_AUTO_HEADERS,
        request_class=ForwardedRequest,
    )


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    body: bytes,
    limits: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    """The upstream's response to `method url` (its status and headers read; the caller reads the
    body and releases or closes it), as `session.request(..., allow_redirects=False)` gives it.
    `session`: one `session()` made (its pool, skipped auto headers and decompression setting
    are used). `limits.total`, when set, bounds connecting, sending and reading the whole
    answer; `limits.connect` bounds taking a pooled connection or opening one."""
    loop = asyncio.get_running_loop()
    connector = session.connector
    assert connector is not None, "the session is closed"
    total = TimeoutHandle(loop, limits.total, ceil_threshold=limits.ceil_threshold)
    handle = total.start()
    timer = total.timer()
    retry_stale = method in IDEMPOTENT_METHODS
    response: aiohttp.ClientResponse | None = None
    try:
        with timer:
            while True:
                request = ForwardedRequest(
                    method,
                    url,
                    headers=headers,
                    skip_auto_headers=session.skip_auto_headers,
                    data=body,
                    loop=loop,
                    response_class=aiohttp.ClientResponse,
                    timer=timer,
                    session=session,
                    traces=[],
                )
                try:
                    try:
                        connection = await connector.connect(request, traces=[], timeout=limits)
                    except TimeoutError as exc:
                        raise ConnectionTimeoutError(f"Connection timeout to host {url}") from exc
                    protocol = connection.protocol
                    assert protocol is not None
                    protocol.set_response_params(
                        timer=timer,
                        skip_payload=method in EMPTY_BODY_METHODS,
                        read_until_eof=True,
                        auto_decompress=session.auto_decompress,
                        read_timeout=limits.sock_read,
                        read_bufsize=_READ_BUFSIZE,
                        timeout_ceil_threshold=connector._timeout_ceil_threshold,
                        max_line_size=_MAX_LINE_SIZE,
                        max_field_size=_MAX_FIELD_SIZE,
                        max_headers=_MAX_HEADERS,
                    )
                    try:
                        response = await request.send(connection)
                        try:
                            await response.start(connection)
                        except BaseException:
                            response.close()
                            response = None
                            raise
                    except BaseException:
                        connection.close()
                        raise
                except (ClientOSError, ServerDisconnectedError):
                    # (a pooled connection the server closed just before this request: once more,
                    # on a fresh one, where sending twice cannot change the outcome)
                    if not retry_stale:
                        raise
                    retry_stale = False
                    await request.close()
                    continue
                except ClientError:
                    raise
                except OSError as exc:
                    if exc.errno is None and isinstance(exc, TimeoutError):
                        raise
                    raise ClientOSError(*exc.args) from exc
                break
        assert response is not None
        if handle is not None:  # the total timeout goes on through reading the answer
            if response.connection is not None:
                response.connection.add_callback(handle.cancel)
            else:
                handle.cancel()
        return response
    except BaseException:
        total.close()
        if handle is not None:
            handle.cancel()
        if response is not None:
            response.close()
        # (a body of bytes holds nothing to close, unlike a file's)
        raise
