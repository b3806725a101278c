"""A long prompt seen for the first time is tokenized off the event loop, with the same ids.

`tokenizers`' `encode` holds the GIL for its whole run (milliseconds for a long prompt: every
stream the gateway relays waits that long); `encode_batch` lets go of it. The precise-prefix
scorer's `prepare` (awaited by the Director's `route_async` before scheduling) tokenizes in a
worker thread what the prefix store lacks, and scoring then reads those ids. Checked here:
the ids equal the in-place tokenization's (store on and off, chat and completions, special
tokens), the tokenizer ran on the worker thread, short new text stays in place, and a request
routed through `route_async` is scored with the prepared ids.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferpool.scheduling.plugins.hf_tokenizer import HFPromptTokenizer
from inferpool.scheduling.plugins.precise_prefix import (
    OFF_LOOP_CHARS,
)
from inferpool.scheduling.plugins.prefix_store import PrefixTokenStore
from inferpool.state import Endpoint
from inferpool.state.kvindex import KVBlockIndex, KVEventsSettings
from precise_picker import POOL, precise_core

from .test_sched_hf_tokenizer import LLAMA3_TEMPLATE, MESSAGES, build_model_dir

tokenizers = pytest.importorskip("tokenizers")

WORDS = st.sampled_from(["the", "cache", "a", "b", " ", "\n", ",", "'s", "12", "café", "日本", "🙂", "x-y"])
TEXTS = st.lists(WORDS, min_size=0, max_size=200).map("".join)


class ThreadRecorder:
    """The tokenizer, recording which thread calls `encode` and `encode_batch`."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.calls: list[tuple[str, str]] = []

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("encode", threading.current_thread().name))
        return self._tokenizer.encode(*args, **kwargs)

    def encode_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("encode_batch", threading.current_thread().name))
        return self._tokenizer.encode_batch(*args, **kwargs)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("model"), LLAMA3_TEMPLATE)


def recorded(path: Path) -> tuple[HFPromptTokenizer, ThreadRecorder]:
    hf = HFPromptTokenizer(str(path))
    recorder = ThreadRecorder(hf._tokenizer)
    hf._tokenizer = recorder
    return hf, recorder


def long_text(n: int, tag: str) -> str:
    return " ".join(f"{tag} part {i} says the sauce was good" for i in range(n))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=TEXTS, tails=st.lists(TEXTS, min_size=1, max_size=3), size=st.sampled_from([1, 8, 64]))
def test_a_plan_tokenized_elsewhere_joins_to_the_whole(
    model_dir: Path, prefix: str, tails: list[str], size: int
) -> None:
    hf = HFPromptTokenizer(str(model_dir))

    def encode(text: str) -> list[int]:
        return list(hf._tokenizer.encode(text, add_special_tokens=False).ids)

    store = PrefixTokenStore(encode, segment_chars=size)
    for tail in tails:  # later texts reuse what earlier ones stored
        text = prefix + tail
        plan = store.plan(text)
        batch = [e.ids for e in hf._tokenizer.encode_batch(plan.missing, add_special_tokens=False)]
        assert store.join(plan, batch) == encode(text)


def test_a_segment_evicted_between_plan_and_join_is_tokenized_again() -> None:
    calls: list[str] = []

    def encode(text: str) -> list[int]:
        calls.append(text)
        return [ord(c) for c in text]

    store = PrefixTokenStore(encode, max_segments=2, segment_chars=4)
    text = "aaaa bbbb cccc dddd"  # segments "aaaa", " bbbb", " cccc"; the rest " dddd"
    store.encode(text)
    plan = store.plan(text)
    assert plan.missing == ["aaaa", " dddd"]  # the store keeps two segments: the first went
    store.encode("xxxx yyyy zzzz")  # evicts the two the plan found stored
    calls.clear()
    assert store.join(plan, [encode(piece) for piece in plan.missing]) == [ord(c) for c in text]
    assert calls[2:] == [" bbbb", " cccc"]  # tokenized again, not dropped
    with pytest.raises(ValueError, match="missing"):
        store.join(store.plan("new text here"), [])


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [*MESSAGES[:1], {"role": "user", "content": long_text(200, "chat")}]},
        {"model": "m", "prompt": long_text(200, "completion")},
        {"model": "m", "prompt": long_text(200, "plain"), "add_special_tokens": False},
        {"model": "m", "prompt": [1, 2, 3]},  # ids given: nothing to tokenize
    ],
    ids=["chat", "completion", "no-special-tokens", "token-ids"],
)
@pytest.mark.parametrize("store", [True, False], ids=["store", "no-store"])
def test_off_loop_ids_equal_in_place_ids(model_dir: Path, body: dict[str, Any], store: bool) -> None:
    hf, recorder = recorded(model_dir)
    if not store:
        hf.store = None  # as for a SentencePiece-style tokenizer.json
    expected = HFPromptTokenizer(str(model_dir)).prompt_ids(body)
    ids = asyncio.run(hf.prompt_ids_off_loop(body, OFF_LOOP_CHARS))
    assert ids == expected
    if isinstance(body.get("prompt"), list):  # token ids given: nothing tokenized
        assert recorder.calls == []
    else:
        assert ("encode_batch", "inferpool-tokenize_0") in recorder.calls
        assert all(name != threading.main_thread().name for kind, name in recorder.calls if kind == "encode")
    # seen again: every segment is in the store, only the short rest is new, tokenized in place
    recorder.calls.clear()
    if store and "prompt" in body and isinstance(body["prompt"], str):
        assert asyncio.run(hf.prompt_ids_off_loop(body, OFF_LOOP_CHARS)) == expected
        assert [kind for kind, _ in recorder.calls] == ["encode"]


def test_short_new_text_is_tokenized_in_place(model_dir: Path) -> None:
    hf, recorder = recorded(model_dir)
    body = {"model": "m", "prompt": "a short question about the sauce"}
    assert asyncio.run(hf.prompt_ids_off_loop(body, OFF_LOOP_CHARS)) == hf.prompt_ids(body)
    assert {kind for kind, _ in recorder.calls} == {"encode"}
    assert {name for _, name in recorder.calls} == {threading.current_thread().name}


def warm(index: KVBlockIndex, endpoint: Endpoint, ids: list[int], block: int) -> None:
    source = KVEventsSettings().source(endpoint)
    index.set_live(source, True)
    blocks = (len(ids) - 1) // block
    index.stored(source, list(range(blocks)), None, ids[: blocks * block], block, None)


def test_route_async_scores_with_the_ids_tokenized_off_the_loop(model_dir: Path, tmp_path: Path) -> None:
    core, scorer, index = precise_core(tmp_path, model_dir)
    a, b = (core.datastore.endpoint(POOL, name) for name in ("pod0", "pod1"))
    assert a is not None and b is not None
    recorder = ThreadRecorder(scorer.tokenizer._tokenizer)  # type: ignore[attr-defined]
    scorer.tokenizer._tokenizer = recorder  # type: ignore[attr-defined]
    prompt = long_text(200, "warmed")
    ids = HFPromptTokenizer(str(model_dir)).prompt_ids({"prompt": prompt})
    assert ids is not None and len(ids) > 64
    warm(index, b, ids, 16)  # the second endpoint holds the prompt: the scorer must find it
    warm(index, a, list(reversed(ids)), 16)
    body = b'{"model": "m", "prompt": "' + prompt.encode() + b'", "max_tokens": 1}'

    async def route() -> Endpoint:
        routed = await core.director.route_async(POOL, "/v1/completions", {}, body)
        routed.dispatched(routed.candidates[0])
        routed.finish(200)
        assert routed.result.ranked[0].endpoint is routed.candidates[0]
        return routed.candidates[0]

    assert asyncio.run(route()).name == "pod1"
    assert recorder.calls and all(name == "inferpool-tokenize_0" for _, name in recorder.calls)
    assert not scorer._prepared  # dropped when the request was sent
