"""`openai._stream_delta_parts` reads a stream event's new texts without the mapper's callback;
it must read the same texts, in the same order, that `_map_stream_deltas` visits (and redacts),
whatever the event's shape: chat and completion chunks, Responses and Messages deltas, and
JSON of other shapes or with values of other types where texts are expected."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from inferpool.guard import Screener
from inferpool.guard.openai import StreamScreener, _map_stream_deltas, _stream_delta_parts
from inferpool.guard.policy import default_config

_TEXT = st.text(min_size=1, max_size=6)  # non-empty: two texts in swapped order differ
_OTHER = st.one_of(st.none(), st.integers(), st.lists(_TEXT, max_size=2), st.just({}))
# A value where a text is expected: mostly one, sometimes another JSON type.
_VALUE = st.one_of(_TEXT, _TEXT, _TEXT, _OTHER)


def _object(**keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A JSON object with some of `keys` (often all of them), or now and then another value."""
    return st.one_of(st.fixed_dictionaries(keys), st.fixed_dictionaries({}, optional=keys), _OTHER)


_HOLDER = _object(content=_VALUE, role=_TEXT, reasoning_content=_VALUE, reasoning=_VALUE)
_CHOICE = _object(text=_VALUE, message=_HOLDER, delta=_HOLDER, index=st.integers())
_CHAT = st.fixed_dictionaries({"choices": st.one_of(st.lists(_CHOICE, min_size=1, max_size=3), _OTHER)})
_RESPONSES = st.fixed_dictionaries(
    {"type": st.sampled_from(["response.output_text.delta", "response.reasoning_text.delta"])},
    optional={"delta": _VALUE},
)
_MESSAGES = st.fixed_dictionaries(
    {"type": st.just("content_block_delta")},
    optional={"delta": _object(text=_VALUE, thinking=_VALUE, type=_TEXT)},
)
# Other types, and a `type` of any JSON type.
_OTHERS = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["response.output_text.done", "message_stop", "ping"]), _VALUE)},
    optional={"delta": _VALUE, "choices": st.lists(_CHOICE, max_size=1)},
)
_EVENT = st.one_of(_CHAT, _CHAT, _RESPONSES, _MESSAGES, _OTHERS, _VALUE, st.just({}))


@settings(max_examples=500)
@given(data=_EVENT)
@example(data={"choices": [{"text": "t", "message": {"content": "m"}, "delta": {"content": "d"}}]})
@example(data={"type": "content_block_delta", "delta": {"thinking": "h", "text": "t"}})
@example(data={"choices": 1})
@example(data={"type": ["response.output_text.delta"], "delta": "d"})
def test_the_texts_read_are_those_the_mapper_visits(data: Any) -> None:
    def visited() -> list[str]:
        texts: list[str] = []

        def visit(text: str) -> str:
            texts.append(text)
            return text

        _map_stream_deltas(data, visit)
        return texts

    assert [
        text for _, text in _stream_delta_parts(data)
    ] == visited()  # and neither raises, whatever the JSON


async def test_an_event_of_an_unexpected_shape_passes_through_unchanged() -> None:
    """A model server's event with `choices` or `type` of another JSON type holds no answer
    text: the screened stream passes it on as it came instead of failing mid-answer."""
    screener = Screener(default_config())
    for event in (b'data: {"choices": 1}\n\n', b'data: {"type": ["a"], "delta": "x"}\n\n'):
        stream = StreamScreener(screener, "m")
        assert await stream.feed(event) + stream.flush() == event


_FUNCTION = _object(arguments=_VALUE, name=_TEXT)
_CALL = _object(index=st.one_of(st.integers(-2, 3), _OTHER), function=_FUNCTION, id=_TEXT)
_DELTA = _object(content=_VALUE, tool_calls=st.one_of(st.lists(_CALL, max_size=2), _OTHER), reasoning=_VALUE)
_ONE_CHOICE = _object(delta=_DELTA, index=st.one_of(st.integers(-2, 3), _OTHER), text=_VALUE)


@settings(max_examples=500)
@given(choice=_ONE_CHOICE)
@example(choice={"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"arguments": "{"}}]}})
@example(choice={"index": -1, "delta": {"content": "d"}})
@example(choice={"index": 2, "delta": {"content": "d"}})
@example(choice={"index": 1, "delta": {"tool_calls": [{"function": {"arguments": "1"}}]}})
@example(
    choice={"index": 1, "delta": {"tool_calls": [{"index": 2, "function": {"arguments": "1"}}]}, "text": 5}
)
def test_one_choices_event_is_read_as_the_general_reading_reads_it(choice: Any) -> None:
    """Most events hold one choice, whose delta is one text or one call's fragment: read without
    the general walk, with the same keys and texts (a second, empty place in `choices` sends the
    same choice through the general reading: a choice that is no object is passed over)."""
    assert _stream_delta_parts({"choices": [choice]}) == _stream_delta_parts({"choices": [choice, None]})
