"""`openai._stream_delta_texts` reads a stream event's new texts without the mapper's callback;
it must read the same texts, in the same order, that `_map_stream_deltas` visits (and redacts),
whatever the event's shape: chat and completion chunks, Responses and Messages deltas, and
JSON of other shapes or with values of other types where texts are expected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.guard.openai import _map_stream_deltas, _stream_delta_texts

_TEXT = st.text(max_size=6)
# A value where a text is expected: usually one, sometimes another JSON type.
_VALUE = st.one_of(_TEXT, _TEXT, st.none(), st.integers(), st.lists(_TEXT, max_size=2), st.just({}))


def _maybe(key: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), st.builds(lambda v: {key: v}, value))


def _merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


_HOLDER = st.one_of(_merged(_maybe("content", _VALUE), _maybe("role", _TEXT)), _VALUE)
_CHOICE = st.one_of(
    _merged(
        _maybe("text", _VALUE), _maybe("message", _HOLDER), _maybe("delta", _HOLDER), _maybe("index", _VALUE)
    ),
    _VALUE,
)
_CHAT = _merged(_maybe("choices", st.one_of(st.lists(_CHOICE, max_size=3), _VALUE)), _maybe("id", _TEXT))
_TYPES = st.sampled_from(
    ["response.output_text.delta", "response.reasoning_text.delta", "content_block_delta",
     "response.output_text.done", "message_stop", "ping"]
)  # fmt: skip
_DELTA = st.one_of(_VALUE, _merged(_maybe("text", _VALUE), _maybe("thinking", _VALUE), _maybe("type", _TEXT)))
_TYPED = _merged(st.builds(lambda t: {"type": t}, st.one_of(_TYPES, _VALUE)), _maybe("delta", _DELTA))
_EVENT = st.one_of(_CHAT, _TYPED, _VALUE)


def _outcome(read: Callable[[], list[str]]) -> list[str] | type[Exception]:
    """What reading the texts gives: the texts, or the error it raises (a `choices` or `type`
    of an unusable JSON type raises TypeError in the mapper; the reader must do the same)."""
    try:
        return read()
    except TypeError as error:
        return type(error)


@settings(max_examples=500)
@given(data=_EVENT)
def test_the_texts_read_are_those_the_mapper_visits(data: Any) -> None:
    def visited() -> list[str]:
        texts: list[str] = []

        def visit(text: str) -> str:
            texts.append(text)
            return text

        _map_stream_deltas(data, visit)
        return texts

    assert _outcome(lambda: _stream_delta_texts(data)) == _outcome(visited)
