"""A forwarded request carries the headers aiohttp's own request would, with the session's skips."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from multidict import CIMultiDict, istr
from yarl import URL

from inferpool.gateway.upstream import SKIP_AUTO_HEADERS, ForwardedRequest

SESSION_SKIP = frozenset(istr(name) for name in SKIP_AUTO_HEADERS)  # as ClientSession keeps them


@pytest.mark.parametrize(
    "sent",
    [
        {"content-type": "application/json", "x-request-id": "abc"},
        {"Accept": "text/event-stream", "User-Agent": "openai-python", "Accept-Encoding": "gzip"},
        {},
    ],
)
@pytest.mark.parametrize("skip", [SESSION_SKIP, None, frozenset({istr("Accept")})])
async def test_headers_are_aiohttps_own(sent: dict[str, str], skip: frozenset[istr] | None) -> None:
    loop = asyncio.get_running_loop()

    def build(cls: type[aiohttp.ClientRequest]) -> aiohttp.ClientRequest:
        return cls(
            "POST",
            URL("http://127.0.0.1:8000/v1/completions"),
            headers=CIMultiDict(sent),
            skip_auto_headers=skip,
            data=b'{"model": "m"}',
            loop=loop,
        )

    ours, theirs = build(ForwardedRequest), build(aiohttp.ClientRequest)
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert dict(ours.skip_auto_headers) == dict(theirs.skip_auto_headers)
