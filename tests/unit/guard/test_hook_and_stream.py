"""The external screening hook against a real loopback server, and SSE stream screening."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from free_ports import free_port
from inferpool.guard import Action, CheckConfig, GuardConfig, HookConfig, Screener, Stage
from inferpool.guard.openai import Blocked, StreamScreener, screen_request, screen_response


@pytest.fixture
async def hook_url() -> AsyncIterator[str]:
    async def screen(request: web.Request) -> web.Response:
        data = await request.json()
        text = data["text"]
        if "slow" in text:
            await asyncio.sleep(5)
        if "broken" in text:
            return web.Response(status=500)
        if "forbidden" in text:
            return web.json_response({"action": "block", "reason": "topic not allowed"})
        if "tidy" in text:
            return web.json_response({"action": "redact", "text": text.replace("tidy", "[x]")})
        return web.json_response({"action": "allow"})

    app = web.Application()
    app.router.add_post("/screen", screen)
    # The screener gives up on "slow" after its timeout; cancelling the abandoned handler lets the
    # teardown end at once instead of waiting out its sleep (4.7 s per test).
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/screen"
    await runner.cleanup()


@pytest.mark.parametrize("fail_open", [False, True])
async def test_hook_verdicts_and_failure_policy(hook_url: str, fail_open: bool) -> None:
    s = Screener(GuardConfig("h", (), HookConfig(hook_url, timeout_s=0.3, fail_open=fail_open)))
    assert (await s.screen_async("hello", Stage.PROMPT)).action is None
    blocked = await s.screen_async("a forbidden thing", Stage.PROMPT)
    assert blocked.blocked and "topic not allowed" in blocked.reason
    assert (await s.screen_async("keep it tidy", Stage.PROMPT)).text == "keep it [x]"
    for text in ("slow one", "broken one"):
        v = await s.screen_async(text, Stage.PROMPT)
        assert v.blocked is (not fail_open), text
        if not fail_open:
            what = "timed out" if text == "slow one" else "failed"
            assert v.reason == f"prompt blocked: the screening service {what} and the policy fails closed"
    # response stage is not hooked by default
    assert not (await s.screen_async("forbidden", Stage.RESPONSE)).blocked


async def test_unreachable_hook_fails_closed_without_telling_the_client_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reason goes to the client (a 400 content_filter): it says what happened, never the
    connection error, which names the screening service's host and port. The log keeps that,
    once per outage: repeats go to debug until the service answers again."""
    port = free_port()  # nothing listens there
    s = Screener(GuardConfig("h", (), HookConfig(f"http://127.0.0.1:{port}/screen", timeout_s=0.5)))
    with caplog.at_level(logging.DEBUG, logger="inferpool.guard.screen"):
        first = await s.screen_async("anything", Stage.PROMPT)
        second = await s.screen_async("anything else", Stage.PROMPT)
    for verdict in (first, second):
        assert verdict.blocked
        assert verdict.reason == (
            "prompt blocked: the screening service could not be reached and the policy fails closed"
        )
    records = [r for r in caplog.records if "screening service" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG]
    assert f"http://127.0.0.1:{port}/screen failed (Cannot connect to host 127.0.0.1:{port}" in (
        records[0].getMessage()
    )
    assert "blocking it (FailClosed)" in records[0].getMessage()


async def test_a_failing_hook_is_logged_again_once_it_has_answered(
    hook_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = Screener(GuardConfig("h", (), HookConfig(hook_url, timeout_s=0.3)))
    with caplog.at_level(logging.DEBUG, logger="inferpool.guard.screen"):
        for text in ("broken", "broken", "hello", "broken"):
            await s.screen_async(text, Stage.PROMPT)
    assert [(r.levelno, r.getMessage().endswith("answers again")) for r in caplog.records] == [
        (logging.WARNING, False),
        (logging.DEBUG, False),
        (logging.INFO, True),
        (logging.WARNING, False),
    ]


async def test_request_body_redaction_and_block() -> None:
    s = Screener(GuardConfig("t", (CheckConfig("pii", Action.REDACT), CheckConfig("secrets", Action.BLOCK))))
    body = orjson.dumps(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "mail me at a@b.io"},
                {"role": "user", "content": [{"type": "text", "text": "or c@d.io"}]},
            ],
        }
    )
    out = orjson.loads(await screen_request(s, body, "m"))
    assert out["messages"][0]["content"] == "mail me at [REDACTED:email]"
    assert out["messages"][1]["content"][0]["text"] == "or [REDACTED:email]"
    plain = orjson.dumps({"model": "m", "prompt": "nothing here"})
    assert await screen_request(s, plain, "m") == plain  # untouched bytes when nothing matched
    with pytest.raises(Blocked):
        await screen_request(s, orjson.dumps({"prompt": ["ok", "key AKIAIOSFODNN7EXAMPLE"]}), "m")
    with pytest.raises(Blocked):
        await screen_response(
            s, orjson.dumps({"choices": [{"message": {"content": "AKIAIOSFODNN7EXAMPLE"}}]}), "m"
        )
    assert await screen_request(s, b"not json", "m") == b"not json"


def sse(text: str) -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + b"\n\n"


async def test_stream_blocks_a_secret_split_across_events() -> None:
    s = Screener(GuardConfig("t", (CheckConfig("secrets", Action.BLOCK),)))
    stream = StreamScreener(s, "m")
    assert await stream.feed(sse("the key is AKIA")) == sse("the key is AKIA")
    partial = sse("IOSFODNN")
    assert await stream.feed(partial[:10]) == b""  # incomplete event is held back
    assert await stream.feed(partial[10:]) == partial
    with pytest.raises(Blocked):
        await stream.feed(sse("7EXAMPLE and more"))
    assert stream.blocked is not None


async def test_stream_blocks_a_secret_fed_one_character_at_a_time() -> None:
    """Events that complete no word are not re-screened (the words already passed); the event
    whose space completes the key must still be."""
    s = Screener(GuardConfig("t", (CheckConfig("secrets", Action.BLOCK),)))
    stream = StreamScreener(s, "m")
    for char in "the key is AKIAIOSFODNN7EXAMPLE":
        await stream.feed(sse(char))
    with pytest.raises(Blocked):
        await stream.feed(sse(" and more"))


async def test_stream_redacts_per_event() -> None:
    s = Screener(GuardConfig("t", (CheckConfig("pii", Action.REDACT),)))
    stream = StreamScreener(s, "m")
    out = await stream.feed(sse("write to x@y.org now") + b"data: [DONE]\n\n")
    assert b"[REDACTED:email]" in out and b"x@y.org" not in out and out.endswith(b"data: [DONE]\n\n")
