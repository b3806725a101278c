"""A screening service (the GuardPolicy webhook) on streamed answers: asked each time
`streamStepChars` more characters of complete words have streamed, and at the stream's end,
not once per word (each call is a round trip the stream waits for, and services such as Model
Armor bill per call). With hold-back, text the service has not passed is held for it. A real
loopback service counts the calls. Budget: ≈2 s."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from inferpool.api.guard import GuardPolicySpec
from inferpool.guard import GuardConfig, HookConfig, Screener, Stage
from inferpool.guard.openai import Blocked, StreamScreener

PROSE = "The garden was quiet in the morning and the paths were wet after the rain. " * 30


class Service:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def screen(self, request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        self.texts.append(text)
        if "forbidden" in text:
            return web.json_response({"action": "block", "reason": "topic not allowed"})
        return web.json_response({"action": "allow"})


@pytest.fixture
async def service() -> AsyncIterator[tuple[Service, str]]:
    service = Service()
    app = web.Application()
    app.router.add_post("/screen", service.screen)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield service, f"http://127.0.0.1:{port}/screen"
    await runner.cleanup()


def screener(url: str, step: int = 256, hold_back: int = 0) -> Screener:
    hook = HookConfig(url, 5.0, False, frozenset({Stage.RESPONSE}), stream_step_chars=step)
    return Screener(GuardConfig("t", (), hook=hook, stream_hold_back_chars=hold_back))


def sse(text: str) -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + b"\n\n"


def sent_text(raw: bytes) -> str:
    out = []
    for event in raw.split(b"\n\n"):
        if event.startswith(b"data: {"):
            data = orjson.loads(event[6:])
            out += [c["delta"].get("content", "") for c in data.get("choices", [])]
    return "".join(out)


async def stream(s: Screener, text: str, size: int = 4) -> tuple[bytes, str | None]:
    screening = StreamScreener(s, "m")
    sent = b""
    try:
        for at in range(0, len(text), size):
            sent += await screening.feed(sse(text[at : at + size]))
        sent += await screening.feed(b"data: [DONE]\n\n")
    except Blocked as blocked:
        return sent + blocked.passed, blocked.reason
    return sent, None


async def test_the_service_is_asked_once_per_step_and_at_the_end(service: tuple[Service, str]) -> None:
    calls, url = service
    sent, reason = await stream(screener(url), PROSE)
    assert reason is None and sent_text(sent) == PROSE
    # 2,250 characters: one call per 256 more of complete words (a step ends where a word does),
    # and the final check's; once per word it was 443
    assert len(PROSE) // 256 <= len(calls.texts) <= len(PROSE) // 256 + 2
    assert calls.texts[-1] == PROSE[-len(calls.texts[-1]) :]  # the end is asked about
    seen = "".join(calls.texts)
    assert all(sentence in seen for sentence in PROSE.split(". ")[:-1])  # every word reached it


async def test_a_step_of_one_asks_about_every_word_as_before(service: tuple[Service, str]) -> None:
    calls, url = service
    text = PROSE[:400]
    await stream(screener(url, step=1), text)
    assert len(calls.texts) >= text.count(" ") - 1


async def test_the_service_blocks_the_stream_within_a_step(service: tuple[Service, str]) -> None:
    _, url = service
    text = PROSE[:600] + "and then a forbidden word " + PROSE[:900]
    sent, reason = await stream(screener(url), text)
    assert reason == "response blocked by the screening service: topic not allowed"
    client = sent_text(sent)
    # without hold-back the words stream on until the service's next step has read them
    assert "forbidden" in client and len(client) <= 600 + 26 + 256 + 8


async def test_with_hold_back_nothing_the_service_blocks_reaches_the_client(
    service: tuple[Service, str],
) -> None:
    calls, url = service
    text = PROSE[:600] + "and then a forbidden word " + PROSE[:900]
    for size in (1, 4, 13):
        calls.texts.clear()
        sent, reason = await stream(screener(url, hold_back=32), text, size)
        assert reason is not None and "forbidden" not in sent_text(sent), size
        assert len(calls.texts) <= 600 // 256 + 2, size


async def test_with_hold_back_a_passing_stream_arrives_whole_and_in_order(
    service: tuple[Service, str],
) -> None:
    _, url = service
    for size in (1, 4, 29):
        sent, reason = await stream(screener(url, hold_back=32), PROSE, size)
        assert reason is None and sent_text(sent) == PROSE, size


def test_the_step_is_a_positive_number_of_characters() -> None:
    spec = {
        "targetRefs": [{"kind": "Gateway", "name": "g"}],
        "webhook": {"url": "http://127.0.0.1:9500/screen"},
    }
    parsed = GuardPolicySpec.model_validate(spec)
    assert parsed.webhook is not None and parsed.webhook.stream_step_chars == 256
    spec["webhook"]["streamStepChars"] = 64  # type: ignore[index]
    assert GuardPolicySpec.model_validate(spec).webhook.stream_step_chars == 64  # type: ignore[union-attr]
    spec["webhook"]["streamStepChars"] = 0  # type: ignore[index]
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        GuardPolicySpec.model_validate(spec)


async def test_a_step_longer_than_half_the_window_is_cut_to_it(service: tuple[Service, str]) -> None:
    """What the service is asked about must still be in the window: with a 200-character window
    a step of 1,000 is 100, and every word reaches the service."""
    calls, url = service
    hook = HookConfig(url, 5.0, False, frozenset({Stage.RESPONSE}), stream_step_chars=1000)
    small = Screener(GuardConfig("t", (), hook=hook, stream_window_chars=200, stream_hold_back_chars=32))
    sent, reason = await stream(small, PROSE[:1500])
    assert reason is None and sent_text(sent) == PROSE[:1500]
    assert len(calls.texts) >= 1500 // 100 - 1
    seen = "".join(calls.texts)
    assert all(sentence in seen for sentence in PROSE[:1500].split(". ")[:-1])
