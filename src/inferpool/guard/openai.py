"""Where the text is in inference bodies, and how to put screened text back.

Prompts: `prompt`, chat `messages[].content`, embeddings `input`, the Responses API's
`instructions` and `input` items, Anthropic's `system` and `messages` blocks (see
`_prompt_slots`). Answers: `choices[].text` / `.message.content`, Responses `output` items,
Anthropic `content` blocks; in streams, the delta of each `data:` event (chat chunks,
`response.output_text.delta`, `content_block_delta`).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import orjson

from inferpool.errors import InferenceError
from inferpool.guard import jsontext
from inferpool.guard.findings import Finding
from inferpool.guard.jsontext import JsonState
from inferpool.guard.poisoning import name_words
from inferpool.guard.policy import DEFINITIONS_APART, Action, Stage
from inferpool.guard.screen import Screener, Verdict, redact
from inferpool.guard.stream import ANSWER_STAGE, STREAM_TAIL_CHARS, StreamedText

log = logging.getLogger(__name__)

CONTENT_FILTER = "content_filter"


class Blocked(Exception):
    """Screening decided the text may not pass; `reason` goes into the 400 / final SSE error.

    `passed`: in a stream, the screened events of the same chunk that came before the blocked one
    (they are sent before the error event, as if they had arrived in a chunk of their own).
    `final_event`: in a stream, the error event that ends it, in the stream's own API shape.
    """

    def __init__(self, reason: str, passed: bytes = b"", final_event: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.passed = passed
        self.final_event = final_event if final_event is not None else error_event(reason)


def complete_words(text: str) -> str:
    """`text` up to its last space or newline (a word still being streamed is left out)."""
    return text[: max(text.rfind(" "), text.rfind("\n")) + 1]


def _collector(into: list[str]) -> Callable[[str], str]:
    def collect(text: str) -> str:
        into.append(text)
        return text

    return collect


class JsonText(str):
    """Tool-call arguments: JSON, screened as written and redacted along their structure
    (guard.jsontext), so the client can still parse them."""

    __slots__ = ()


class ToolText(str):
    """A tool's description, or one in its parameters' schema: a request's are screened together,
    as one text, whose verdict is kept for the next request that sends them (an agent sends
    dozens with every turn: screened one by one, 25 tools cost ≈1.8 ms a request)."""

    __slots__ = ()


# How a text is kept in a body: a string; a string of JSON (tool-call arguments); a JSON value
# (Anthropic's `tool_use.input`, an object), screened as its JSON text; a tool definition's text
# (a string, screened with the request's others: ToolText); a name in a tool definition (the
# tool's, a parameter's: the slot's key is the name itself), read as words with the definitions
# and never rewritten (a renamed parameter would break the tool).
TEXT, JSON_STRING, JSON_VALUE, DEFINITION, NAME = range(5)

# A text in a decoded body: (the dict or list holding it, its key or index, whether it is a
# user turn right after a system prompt, which the injection check weighs, how it is kept).
_Slot = tuple[Any, Any, bool, int]


def _map_slot(holder: Any, key: Any, form: int, fn: Callable[[str], str]) -> bool:
    """Apply `fn` to one text where it is kept; whether it changed."""
    if form == NAME:
        fn(ToolText(name_words(key)))
        return False
    value = holder[key]
    if form == TEXT:
        holder[key] = new = fn(value)
        return new != value
    if form == DEFINITION:
        new = fn(ToolText(value))
        holder[key] = str(new)
        return new != value
    text = JsonText(value if form == JSON_STRING else orjson.dumps(value).decode())
    new = fn(text)
    if new == text:
        return False
    if form == JSON_STRING:
        holder[key] = str(new)
    else:
        try:
            holder[key] = orjson.loads(new)
        except orjson.JSONDecodeError:  # (a screening service's rewrite that is no JSON)
            holder[key] = str(new)
    return True


def _prompt_slots(data: Any, definitions: bool = True) -> list[_Slot]:
    """Every prompt text of a request body, in order, wherever its API keeps it.

    Completions `prompt`; embeddings `input` (text or texts); the Responses API's
    `instructions` and `input` (text, or items with content parts); Anthropic's `system`;
    chat and Anthropic `messages[].content` (text or parts/blocks with `text`); vLLM's
    rerank and score inputs (`query`, `documents`, `text_1`, `text_2`: text, texts, or
    documents and content parts with `text`), and chat's RAG `documents` (dicts with `text`).
    Tool definitions (`tools`, chat's older `functions`): each tool's `description` and the
    descriptions in its parameters' schema, which the chat template renders into the prompt
    (where a poisoned tool hides its instructions); the tool calls of earlier turns: chat's
    `tool_calls[].function.arguments` (and `function_call`), Responses `function_call` items'
    `arguments`, Anthropic `tool_use` blocks' `input`.
    """
    if not isinstance(data, dict):
        return []
    slots: list[_Slot] = []
    _strings(data, "prompt", slots)
    for key in ("query", "text_1", "text_2", "documents"):  # (what a cross-encoder reads)
        if key in data:
            _document_slots(data, key, slots)
    previous: object = None
    for key in ("instructions", "system"):
        if isinstance(data.get(key), str) or isinstance(data.get(key), list):
            _content_slots(data, key, False, slots)
            previous = "system"
    for key in ("tools", "functions") if definitions else ():
        if isinstance(tools := data.get(key), list):
            _tool_slots(tools, slots)
    items = data.get("input")
    if isinstance(items, str):
        slots.append((data, "input", previous == "system", TEXT))
    elif isinstance(items, list):
        if all(isinstance(i, str) for i in items):
            _strings(data, "input", slots)
        else:
            previous = _message_slots(items, previous, slots)
    messages = data.get("messages")
    if isinstance(messages, list):
        _message_slots(messages, previous, slots)
    return slots


# How deep a tool's parameter schema is read (nested objects and arrays)
_SCHEMA_DEPTH = 8


def _tool_slots(tools: list[Any], slots: list[_Slot]) -> None:
    """What a chat template renders of each tool (most write it as JSON: every field reaches the
    model, and a poisoned tool may hide its order in any of them): its name and `description`
    (chat keeps them in `function`; Responses and Anthropic beside the type), and its schema
    (`parameters`, Anthropic's `input_schema`) whole (`_schema_slots`)."""
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        inner = tool.get("function")
        for holder in (tool, inner) if isinstance(inner, dict) else (tool,):
            if isinstance(name := holder.get("name"), str) and name:
                slots.append((None, name, False, NAME))
            if isinstance(holder.get("description"), str):
                slots.append((holder, "description", False, DEFINITION))
            for key in ("parameters", "input_schema"):
                if isinstance(schema := holder.get(key), dict):
                    _schema_slots(schema, slots, _SCHEMA_DEPTH)


# JSON Schema's keywords: a key of a schema that is none of them is read as a name (a vendor's
# extension, or an order written as a key), as a parameter's name is
_SCHEMA_KEYWORDS = frozenset(
    {
        "$anchor", "$comment", "$defs", "$dynamicAnchor", "$dynamicRef", "$id", "$ref", "$schema",
        "$vocabulary", "additionalItems", "additionalProperties", "allOf", "anyOf", "const",
        "contains", "contentEncoding", "contentMediaType", "contentSchema", "default",
        "definitions", "dependencies", "dependentRequired", "dependentSchemas", "deprecated",
        "description", "discriminator", "else", "enum", "examples", "exclusiveMaximum",
        "exclusiveMinimum", "format", "if", "items", "maxContains", "maxItems", "maxLength",
        "maxProperties", "maximum", "minContains", "minItems", "minLength", "minProperties",
        "minimum", "multipleOf", "not", "nullable", "oneOf", "pattern", "patternProperties",
        "prefixItems", "properties", "propertyNames", "readOnly", "required", "then", "title",
        "type", "unevaluatedItems", "unevaluatedProperties", "uniqueItems", "writeOnly",
    }
)  # fmt: skip
# Keywords whose value maps names (of parameters, of definitions) to schemas
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# String values that say nothing but the schema's structure: not read (a type only where it is one)
_STRUCTURE = frozenset({"type", "$ref", "$schema", "$id", "$anchor", "$dynamicRef", "$dynamicAnchor"})
_JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
# Keywords whose lists of strings are structure too: parameters already read as names, types
_LISTS_NOT_READ = frozenset({"required", "type"})


def _schema_slots(schema: Any, slots: list[_Slot], depth: int) -> None:
    """Every text of a JSON schema and of each schema within it: its strings (a description, a
    title, a default, a pattern, the values it enumerates or gives as examples, a vendor
    extension's), each a definition's text; the names of its parameters and definitions, and any
    key that is no keyword, as names. Not the structure: types, references, `required`."""
    if depth == 0:
        return
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key not in _SCHEMA_KEYWORDS and isinstance(key, str) and key:
                slots.append((None, key, False, NAME))
            if isinstance(value, str):
                if key not in _STRUCTURE or (key == "type" and value not in _JSON_TYPES):
                    slots.append((schema, key, False, DEFINITION))
            elif key in _NAMED_SCHEMAS and isinstance(value, dict):
                for name, inner in value.items():
                    if name:
                        slots.append((None, name, False, NAME))
                    if isinstance(inner, (dict, list)):
                        _schema_slots(inner, slots, depth - 1)
            elif isinstance(value, list):
                if key not in _LISTS_NOT_READ:
                    slots.extend(
                        (value, i, False, DEFINITION) for i, v in enumerate(value) if isinstance(v, str)
                    )
                    _schema_slots(value, slots, depth - 1)
            elif isinstance(value, dict):
                _schema_slots(value, slots, depth - 1)
    elif isinstance(schema, list):
        for value in schema:
            if isinstance(value, (dict, list)):
                _schema_slots(value, slots, depth - 1)


def _call_slots(message: dict[str, Any], slots: list[_Slot]) -> None:
    """The arguments of the tool calls an assistant turn made (chat `tool_calls` and the older
    `function_call`; a Responses `function_call` item is its own call)."""
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if isinstance(call, dict) and isinstance(function := call.get("function"), dict):
            if isinstance(function.get("arguments"), str):
                slots.append((function, "arguments", False, JSON_STRING))
    if isinstance(function := message.get("function_call"), dict) and isinstance(
        function.get("arguments"), str
    ):
        slots.append((function, "arguments", False, JSON_STRING))


def _document_slots(data: dict[str, Any], key: str, slots: list[_Slot]) -> None:
    """Texts of a rerank/score input: a string, or a list of strings, of documents with `text`,
    or of {"content": [parts]} (vLLM's multimodal form); images and other parts are not text."""
    value = data.get(key)
    if isinstance(value, str):
        slots.append((data, key, False, TEXT))
        return
    items = value.get("content") if isinstance(value, dict) else value
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if isinstance(item, str):
            slots.append((items, i, False, TEXT))
        elif isinstance(item, dict):
            if isinstance(item.get("text"), str):
                slots.append((item, "text", False, TEXT))
            elif isinstance(item.get("content"), list):
                _document_slots(item, "content", slots)


def _strings(data: dict[str, Any], key: str, slots: list[_Slot]) -> None:
    value = data.get(key)
    if isinstance(value, str):
        slots.append((data, key, False, TEXT))
    elif isinstance(value, list):
        slots.extend((value, i, False, TEXT) for i, v in enumerate(value) if isinstance(v, str))


def _message_slots(messages: list[Any], previous: object, slots: list[_Slot]) -> object:
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        kind = msg.get("type")
        if kind == "function_call_output":  # a tool's result (Responses API), as chat's tool turns
            _content_slots(msg, "output", False, slots)
            previous = None
            continue
        if kind == "function_call":  # a call the model made (Responses API)
            if isinstance(msg.get("arguments"), str):
                slots.append((msg, "arguments", False, JSON_STRING))
            previous = None
            continue
        role = msg.get("role")
        _content_slots(msg, "content", role == "user" and previous in ("system", "developer"), slots)
        if role == "assistant":
            _call_slots(msg, slots)
        previous = role
    return previous


def _content_slots(holder: dict[str, Any], key: str, after_system: bool, slots: list[_Slot]) -> None:
    content = holder.get(key)
    if isinstance(content, str):
        slots.append((holder, key, after_system, TEXT))
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    slots.append((part, "text", after_system, TEXT))
                elif isinstance(part.get("content"), (str, list)):  # an Anthropic tool_result
                    _content_slots(part, "content", after_system, slots)
                elif part.get("type") == "tool_use" and "input" in part:  # an Anthropic tool call
                    slots.append((part, "input", False, JSON_VALUE))


def _after_system(data: Any) -> list[bool]:
    """For each prompt text, in `_prompt_slots`' order: is it a user turn right after a system prompt?"""
    return [after for _, _, after, _ in _prompt_slots(data)]


def _choice_list(data: dict[str, Any]) -> list[Any]:
    """`choices`, when it is a list; an answer with anything else there holds no choice text
    (and passes on as it came: screening reads answers, it does not validate them)."""
    choices = data.get("choices")
    return choices if isinstance(choices, list) else []


# The texts of a chat message or delta: its answer, and the reasoning vLLM streams before it
# (`reasoning_content`; `reasoning` in newer servers).
_MESSAGE_TEXTS = ("content", "reasoning_content", "reasoning")


# What a choice carries besides its text that spells the text out token by token: its logprobs,
# and the token ids vLLM returns with `return_token_ids` (which /detokenize turns back into text)
_SPELLS_OUT_TEXT = ("logprobs", "token_ids")


def _map_choices(
    data: Any, fn: Callable[[str], str], holders: tuple[str, ...] = ("message", "delta")
) -> None:
    """Answer texts of OpenAI completions and chat: `choices[].text`, `.message` and `.delta`
    texts (_MESSAGE_TEXTS; a stream chunk's are in `delta` only). A choice whose text `fn`
    changes loses its `logprobs` and `token_ids` (_SPELLS_OUT_TEXT): they spell out what was
    redacted."""
    if not isinstance(data, dict):
        return
    for choice in _choice_list(data):
        if not isinstance(choice, dict):
            continue
        changed = False
        if isinstance(text := choice.get("text"), str):
            choice["text"] = fn(text)
            changed = choice["text"] != text
        for holder in holders:
            inner = choice.get(holder)
            if isinstance(inner, dict):
                for key in _MESSAGE_TEXTS:
                    if isinstance(text := inner.get(key), str):
                        inner[key] = fn(text)
                        changed = changed or inner[key] != text
                if holder == "message":  # (a stream's tool calls are fragments: _map_stream_deltas)
                    calls: list[_Slot] = []
                    _call_slots(inner, calls)
                    for function, key, _, form in calls:
                        changed = _map_slot(function, key, form, fn) or changed
        if changed:
            for key in _SPELLS_OUT_TEXT:
                if choice.get(key) is not None:
                    choice[key] = None


def _map_answer(data: Any, fn: Callable[[str], str]) -> None:
    """Answer texts of every API: choices (with their tool calls' arguments); the Responses
    API's `output` items (message `content[].text`, reasoning `content`/`summary`, a
    `function_call`'s `arguments`); Anthropic's `content` blocks (`text`, a `tool_use`'s `input`)."""
    if not isinstance(data, dict):
        return
    if "choices" in data:
        _map_choices(data, fn)
        return
    for item in data.get("output") or []:
        if isinstance(item, dict):
            for key in ("content", "summary"):
                _map_parts(item.get(key), fn)
            if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
                _map_slot(item, "arguments", JSON_STRING, fn)
    if isinstance(data.get("content"), list):
        _map_parts(data["content"], fn)


def _map_parts(parts: Any, fn: Callable[[str], str]) -> None:
    """Content parts' `text`; a Responses `output_text` part whose text `fn` changes loses its
    `logprobs` (as a choice does); an Anthropic `tool_use` block's `input`."""
    if not isinstance(parts, list):
        return
    for part in parts:
        if not isinstance(part, dict):
            continue
        if isinstance(text := part.get("text"), str):
            part["text"] = fn(text)
            if part["text"] != text and part.get("logprobs"):
                part["logprobs"] = []
        elif part.get("type") == "tool_use" and "input" in part:
            _map_slot(part, "input", JSON_VALUE, fn)


# Stream events of the Responses and Messages APIs whose text is new (the deltas), and where
# it is; the `.done`/`_stop` events repeat the whole text, which is redacted but not re-added.
_STREAM_HOLDERS = ("delta",)  # where a chat chunk's texts are (a whole answer's are in `message`)
_DELTA_EVENTS = frozenset({"response.output_text.delta", "response.reasoning_text.delta"})
_FINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete", "message_stop"})


_ARGUMENTS_DELTA = "response.function_call_arguments.delta"

# A streamed tool call's arguments are a text stream of their own, keyed below 0 (answers and
# reasoning are 2 × choice and 2 × choice + 1): -1 - (choice × _TOOLS_PER_CHOICE + the call's
# index); a match is never looked for across two calls, or between a call and the answer.
_TOOLS_PER_CHOICE = 1 << 16


def _tool_key(choice: int, call: Any, place: int) -> int:
    index = call if type(call) is int and 0 <= call < _TOOLS_PER_CHOICE else place
    return -1 - (choice * _TOOLS_PER_CHOICE + index)


def tool_choice(key: int) -> int:
    """The choice a tool-call key (< 0) belongs to."""
    return (-1 - key) // _TOOLS_PER_CHOICE


def _delta_calls(inner: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """A chat delta's tool-call fragments whose `function.arguments` is a string: (the call's
    index, else its place in the list; its `function`)."""
    calls = inner.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [
        (call.get("index", place), function)
        for place, call in enumerate(calls)
        if isinstance(call, dict)
        and isinstance(function := call.get("function"), dict)
        and isinstance(function.get("arguments"), str)
    ]


def _map_stream_deltas(data: Any, fn: Callable[[str], str]) -> None:
    """New answer text in one stream event: chat/completion chunks, Responses deltas, Anthropic
    deltas; a tool call's arguments (a JsonText each) after the texts of their choice."""
    if not isinstance(data, dict):
        return
    kind = data.get("type")
    if kind is None:
        _map_choices(data, fn, _STREAM_HOLDERS)
        for choice in _choice_list(data):
            if isinstance(choice, dict) and isinstance(inner := choice.get("delta"), dict):
                for _, function in _delta_calls(inner):
                    if _map_slot(function, "arguments", JSON_STRING, fn):
                        for key in _SPELLS_OUT_TEXT:
                            if choice.get(key) is not None:
                                choice[key] = None
    elif not isinstance(kind, str):
        return  # no event type of any API: nothing of it is answer text
    elif kind in _DELTA_EVENTS:
        if isinstance(delta := data.get("delta"), str):
            data["delta"] = fn(delta)
            if data["delta"] != delta and data.get("logprobs"):
                data["logprobs"] = []  # (a Responses delta's own, when asked for)
    elif kind == _ARGUMENTS_DELTA:
        if isinstance(data.get("delta"), str):
            _map_slot(data, "delta", JSON_STRING, fn)
    elif kind == "content_block_delta":
        delta = data.get("delta")
        if isinstance(delta, dict):
            for key in ("text", "thinking"):
                if isinstance(delta.get(key), str):
                    delta[key] = fn(delta[key])
            if isinstance(delta.get("partial_json"), str):  # (an input_json_delta: a tool call's input)
                _map_slot(delta, "partial_json", JSON_STRING, fn)


def _stream_delta_parts(data: Any) -> list[tuple[int, str]]:
    """The texts `_map_stream_deltas` visits, in its order, each with the stream of text it
    continues: 2 × the choice (`choices[].index`, else its place in the list; 0 for the
    Responses and Messages APIs, whose parts follow one another), + 1 for reasoning (a model's
    thinking is not its answer: a match never spans the two), and a key below 0 for each tool
    call's arguments (`_tool_key`). Read without a callback per text (every streamed event
    asks; only a redaction needs the mapper)."""
    if not isinstance(data, dict):
        return []
    kind = data.get("type")
    parts: list[tuple[int, str]] = []
    if kind is None:
        # Most events: one choice, whose delta is its next text or one call's next fragment (what
        # the general reading below gives for them, without its walk)
        choices = data.get("choices")
        if (
            type(choices) is list
            and len(choices) == 1
            and type(choice := choices[0]) is dict
            and "text" not in choice
        ):
            inner = choice.get("delta")
            if type(inner) is dict and len(inner) == 1:
                index = choice.get("index", 0)
                number = index if type(index) is int and index >= 0 else 0
                if type(content := inner.get("content")) is str:
                    return [(2 * number, content)]
                if (
                    type(calls_sent := inner.get("tool_calls")) is list
                    and len(calls_sent) == 1
                    and type(call := calls_sent[0]) is dict
                    and type(function := call.get("function")) is dict
                    and type(arguments := function.get("arguments")) is str
                ):
                    return [(_tool_key(number, call.get("index", 0), 0), arguments)]
        calls: list[tuple[int, dict[str, Any]]] = []  # (choices with tool calls)
        for place, choice in enumerate(_choice_list(data)):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", place)
            # (a negative index, which no server sends, is taken as its place: keys below 0 are tool calls')
            key = 2 * index if type(index) is int and index >= 0 else 2 * place
            if isinstance(text := choice.get("text"), str):
                parts.append((key, text))
            inner = choice.get("delta")
            if isinstance(inner, dict):
                content = inner.get("content")
                if isinstance(content, str):
                    parts.append((key, content))
                # most deltas are {"content": ...} alone: no reasoning or tool call to look for
                if content is None or len(inner) > 1:
                    if isinstance(text := inner.get("reasoning_content"), str):
                        parts.append((key + 1, text))
                    if isinstance(text := inner.get("reasoning"), str):
                        parts.append((key + 1, text))
                    if "tool_calls" in inner:
                        calls.append((key // 2, inner))
        # (after every choice's texts, as _map_stream_deltas visits them)
        for choice_index, inner in calls:
            for place, (index, function) in enumerate(_delta_calls(inner)):
                parts.append((_tool_key(choice_index, index, place), function["arguments"]))
    elif not isinstance(kind, str):
        return parts
    elif kind in _DELTA_EVENTS:
        if isinstance(text := data.get("delta"), str):
            parts.append((0 if kind == "response.output_text.delta" else 1, text))
    elif kind == _ARGUMENTS_DELTA:
        if isinstance(text := data.get("delta"), str):
            parts.append((_tool_key(0, data.get("output_index"), 0), text))
    elif kind == "content_block_delta":
        delta = data.get("delta")
        if isinstance(delta, dict):
            if isinstance(text := delta.get("text"), str):
                parts.append((0, text))
            if isinstance(text := delta.get("thinking"), str):
                parts.append((1, text))
            if isinstance(text := delta.get("partial_json"), str):
                parts.append((_tool_key(0, data.get("index"), 0), text))
    return parts


def _finished_choices(data: Any) -> list[int]:
    """The choices a chat/completion chunk ends (a `finish_reason`), as their answers' text keys."""
    finished: list[int] = []
    if isinstance(data, dict) and data.get("type") is None:
        for place, choice in enumerate(_choice_list(data)):
            if isinstance(choice, dict) and choice.get("finish_reason") is not None:
                index = choice.get("index", place)
                finished.append(2 * index if type(index) is int and index >= 0 else 2 * place)
    return finished


def _map_stream_repeats(data: Any, fn: Callable[[str], str]) -> None:
    """Whole answer texts a Responses stream repeats once a part ends (`.done` events, the final response)."""
    if not isinstance(data, dict):
        return
    kind = data.get("type")
    if not isinstance(kind, str) or not kind.startswith("response."):
        return
    if kind == "response.output_text.done" or kind == "response.reasoning_text.done":
        if isinstance(data.get("text"), str):
            data["text"] = fn(data["text"])
    elif kind == "response.function_call_arguments.done":
        if isinstance(data.get("arguments"), str):
            _map_slot(data, "arguments", JSON_STRING, fn)
    elif kind == "response.content_part.done":
        _map_parts([data.get("part")], fn)
    elif kind == "response.output_item.done":
        _map_answer({"output": [data.get("item")]}, fn)
    elif kind in _FINAL_EVENTS:
        _map_answer(data.get("response"), fn)


TextMapper = Callable[[Any, Callable[[str], str]], None]


async def _screen_json(
    screener: Screener, body: bytes, model: str, stage: Stage, texts_of: TextMapper
) -> bytes:
    """Screen every text `texts_of` finds in a JSON body; redactions re-serialize it, Blocked if any blocks.

    Non-JSON, or JSON without texts, passes unchanged (byte for byte).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    texts: list[str] = []
    texts_of(data, _collector(texts))
    if not texts:
        return body
    screened = await _screen_texts(screener, texts, [False] * len(texts), stage, model)
    if screened is None:
        return body
    replacements = iter(screened)
    texts_of(data, lambda _t: next(replacements))
    return orjson.dumps(data)


async def _screen_texts(
    screener: Screener,
    texts: list[str],
    positions: list[bool],
    stage: Stage,
    model: str,
    definitions_key: bytes | None = None,
) -> list[str] | None:
    """Each text screened (`positions`: a user turn right after a system prompt?), as it is to
    be put back; None when none changed. Blocked if one blocks. Tool definitions (ToolText) are
    screened together; `definitions_key`: what names them all (`_definitions_key`)."""
    known: dict[int, Verdict] = {}
    definitions = [i for i, t in enumerate(texts) if isinstance(t, ToolText)]
    if definitions:
        together = await _screen_definitions(
            screener, [texts[i] for i in definitions], stage, model, definitions_key
        )
        known = dict(zip(definitions, together, strict=True)) if together is not None else {}
    # (a prompt's turns recur: each turn of a conversation sends the ones before it again)
    recurring = stage is Stage.PROMPT
    verdicts: list[Verdict] = []
    for i, (text, after) in enumerate(zip(texts, positions, strict=True)):
        verdict = known.get(i)
        if verdict is None:
            # (a tool call's arguments are read with their JSON escapes decoded: jsontext.reading)
            read = jsontext.decoded(text) if isinstance(text, JsonText) else text
            verdict = await screener.screen_async(read, stage, model, after, recurring=recurring)
            if isinstance(text, JsonText) and not verdict.blocked:
                # (the map back to the JSON is made only where there is something to move)
                verdict.text = (
                    text if verdict.text == read else _json_redacted(text, verdict, jsontext.reading(text)[1])
                )
        if verdict.blocked:
            raise Blocked(verdict.reason)
        verdicts.append(verdict)
    if all(v.text == t for v, t in zip(verdicts, texts, strict=True)):
        return None
    return [v.text for v in verdicts]


async def _screen_definitions(
    screener: Screener, texts: list[str], stage: Stage, model: str, key: bytes | None
) -> list[Verdict] | None:
    """The verdict on each of a request's tool definition texts, screened together
    (DEFINITIONS_APART) and kept for the next request (`recurring`); Blocked if they block.
    None when a screening service rewrote them: then each is screened alone, as other texts.
    `key`: the definitions as sent, noted as passing when nothing is found in them."""
    joined = DEFINITIONS_APART.join(texts)
    whole = await screener.screen_async(joined, stage, model, definitions=True, recurring=True)
    if whole.blocked:
        raise Blocked(whole.reason)
    if whole.text == joined:
        if key is not None and not whole.findings:
            screener.note_passed(key, stage)
        return [Verdict(text) for text in texts]
    if any(f.check == "hook" for f, _ in whole.findings):
        return None
    verdicts, offset = [], 0
    for text in texts:  # (each one's redactions, moved to where it starts)
        end = offset + len(text)
        found = [
            Finding(f.check, f.kind, max(f.start, offset) - offset, min(f.end, end) - offset)
            for f, action in whole.findings
            if action is Action.REDACT and f.start < end and f.end > offset
        ]
        verdict = Verdict(redact(text, found) if found else text)
        for finding in found:
            verdict.add(finding, Action.REDACT)
        verdicts.append(verdict)
        offset = end + len(DEFINITIONS_APART)
    return verdicts


def _json_redacted(text: str, verdict: Verdict, starts: list[int] | None = None) -> str:
    """A JSON text's redaction along its structure, of what the built-in checks found in its
    reading (`starts`: jsontext.reading's map); Blocked when a screening service rewrote the
    reading, which cannot be put back into JSON."""
    if any(f.check == "hook" and action is Action.REDACT for f, action in verdict.findings):
        raise Blocked(
            f"{verdict.reason or 'tool call'}: the screening service redacted a tool call's arguments, "
            "which cannot be put back as JSON"
        )
    found = [
        (*jsontext.in_text(starts, f.start, f.end), f.kind)
        for f, action in verdict.findings
        if action is Action.REDACT
    ]
    return jsontext.redact(text, found)


async def screen_request(screener: Screener, body: bytes, model: str, data: Any = None) -> bytes:
    """The body to forward (redacted if needed); Blocked if a check blocks. Non-JSON passes unchanged.

    `data`: the decoded body, when the caller has decoded it already (it may be changed in place).
    Tool definitions sent as an earlier request sent them, in which nothing was found, are not
    read again (an agent sends the same with every turn; walking 25 tools' schemas costs more
    than screening them once did): unless a screening service screens prompts, which is asked
    each time.
    """
    if data is None:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
    hook = screener.config.hook
    key = _definitions_key(data) if hook is None or Stage.PROMPT not in hook.stages else None
    passed = key is not None and screener.passed_before(key, Stage.PROMPT)
    slots = _prompt_slots(data, definitions=not passed)
    if not slots:
        return body
    texts: list[str] = []
    collect = _collector(texts)
    for holder, name, _, form in slots:
        _map_slot(holder, name, form, collect)
    positions = [after for _, _, after, _ in slots]
    screened = await _screen_texts(screener, texts, positions, Stage.PROMPT, model, None if passed else key)
    if screened is None:
        return body
    replacements = iter(screened)
    for holder, name, _, form in slots:
        _map_slot(holder, name, form, lambda _t: next(replacements))
    return orjson.dumps(data)


def _definitions_key(data: Any) -> bytes | None:
    """A request's tool definitions as sent (None: it has none)."""
    if not isinstance(data, dict):
        return None
    tools, functions = data.get("tools"), data.get("functions")
    if not tools and not functions:
        return None
    return orjson.dumps([tools, functions])


async def screen_response(screener: Screener, body: bytes, model: str) -> bytes:
    """A whole (non-streamed) JSON answer, screened; Blocked if a check blocks."""
    return await _screen_json(screener, body, model, Stage.RESPONSE, _map_answer)


# A stored Responses answer fetched by its id (vLLM keeps them with VLLM_ENABLE_RESPONSES_API_STORE):
# GET /v1/responses/{id}, and POST .../cancel, which answers the response as it stands. Neither
# has a body, so no model names the policy before the answer does; the answer is the model's
# own output, which a policy that screens answers must screen as when it was made. (Its
# `input_items` are the prompt's, screened when they were sent.)
_STORED_ANSWER = re.compile(r"/responses/[^/]+(?:/cancel)?/?$")


# A policy that screens answers asks the model server for them uncompressed: a compressed answer
# is passed unscreened (the data planes read text, not gzip), and a client could ask for one.
ACCEPT_ENCODING, IDENTITY = "accept-encoding", "identity"


def fetches_stored_answer(path: str) -> bool:
    """Whether a request to `path` (query aside) is answered with a stored model answer."""
    return _STORED_ANSWER.search(path.split("?", 1)[0]) is not None


def answer_model(body: bytes) -> str:
    """The `model` a JSON answer names ("" when it names none or is not JSON)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else ""


ScreenerLookup = Callable[[str], Screener | None]  # a data plane's policy for a model


def stored_answer_screener(lookup: ScreenerLookup, body: bytes) -> tuple[Screener | None, str]:
    """The screener of a whole stored answer (`fetches_stored_answer`): the policy for the model
    it names (None when none screens answers), and that model."""
    model = answer_model(body)
    found = lookup(model)
    return (found if screens_response(found) else None), model


def content_filtered(reason: str, param: str) -> InferenceError:
    """The 400 a block answers (OpenAI's `content_filter` finish reason, as an error type)."""
    return InferenceError(400, reason, param=param, err_type=CONTENT_FILTER)


def screens_response(screener: Screener | None) -> bool:
    return screener is not None and screener.config.screens(Stage.RESPONSE)


def screens_prompt(screener: Screener | None) -> bool:
    return screener is not None and screener.config.screens(Stage.PROMPT)


def error_event(reason: str) -> bytes:
    """The final SSE event of a blocked stream: an OpenAI-style error object.

    The `openai` SDK raises on any event whose data has an `error` (Responses streams included)."""
    body = {"error": {"message": reason, "type": CONTENT_FILTER, "param": None, "code": 400}}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def anthropic_error_event(reason: str) -> bytes:
    """The final event of a blocked Messages stream, as vLLM ends one that failed: Anthropic
    clients raise on `event: error` and ignore an untyped `data:` event."""
    body = {"type": "error", "error": {"type": CONTENT_FILTER, "message": reason}}
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


# How much text before held events their redaction screens besides the hold-back itself: more
# than pii.CONTEXT_CHARS (48), how far before an ID number its keyword may stand.
REDACT_CONTEXT_CHARS = 64
# Where an SSE event ends: a line end (CRLF, LF or CR) followed by an empty line. sse-starlette
# (llama-cpp-python's server) ends events with CRLF CRLF.
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r|\n\r\n")
# Held events whose redaction screens the text around them are released in steps of this many
# characters (at most this much more latency than the hold-back itself).
RELEASE_STEP_CHARS = 16
_EMPTY = (0, -(1 << 62))  # the range of an event without text: released as soon as it is first in line
_UNKNOWN_END = 1 << 62  # a release line past any stream's end
_NOTHING: list[str] = []  # (never appended to)


class _ChoiceText:
    """One choice's streamed text, its reasoning, or one of its tool calls' arguments (a request
    with `n` > 1 streams its choices interleaved: a match in one is screened in that text, never
    across them)."""

    __slots__ = ("hooked_to", "passed_recent", "passed_span", "streamed")

    def __init__(self, screener: Screener, window: int) -> None:
        self.streamed = StreamedText(screener, window)
        # The last recent text the blocking checks passed: the same words (no word completed
        # since) give the same verdict, so they are not screened again.
        self.passed_recent = ""
        self.passed_span = (0, 0)  # where it lies: the same place holds the same text
        self.hooked_to = 0  # where the text the hook (webhook) has passed ends


class _Fragment(NamedTuple):
    """A streamed fragment of a tool call's arguments: the JSON state where it starts, the end of
    an escape the fragment before cut (`unread`, read at the start of this one), where in it an
    escape it does not finish begins (`cut`, read with the next), and what it adds to the call's
    reading (the stream the checks see: escapes decoded)."""

    state: JsonState
    unread: str
    cut: int
    read: str

    def rewritten(self, text: str, spans: Iterable[tuple[int, int, str]], begin: int) -> str:
        """`text` (this fragment) with `spans`, in the reading's positions (this fragment's reading
        starts at `begin`), removed along the JSON's structure (jsontext.rewrite)."""
        length, back = len(self.read), len(self.unread)
        starts = jsontext.reading((self.unread + text)[: back + self.cut])[1]

        def raw(at: int) -> int:
            """Where reading position `at` is in `text` (below 0: in an earlier fragment)."""
            at -= begin
            if at < 0:
                return at - back
            if at >= length:
                return self.cut + at - length
            return (at if starts is None else starts[at]) - back

        moved = [(raw(start), raw(stop), marker) for start, stop, marker in spans]
        return jsontext.rewrite(text, moved, 0, self.state)


class _Held:
    """A screened event held back: its bytes, where its text lies in each choice's stream
    (choice -> (start, end)), and, when it may need redacting on release, its head, decoded
    data and where each text `_map_stream_deltas` visits starts (choice, position, and for a
    tool call's arguments the JSON state there)."""

    __slots__ = ("event", "ranges", "texts")

    def __init__(
        self,
        event: bytes,
        ranges: dict[int, tuple[int, int]],
        texts: tuple[bytes, Any, list[tuple[int, int, _Fragment | None]]] | None,
    ) -> None:
        self.event = event
        self.ranges = ranges
        self.texts = texts


def _rewritten(item: _Held, spans: dict[int, list[tuple[int, int, str]]]) -> bytes:
    """The event with the parts of each choice's `spans` in its texts replaced: the marker where
    a span starts, nothing where it goes on from an earlier event (in a tool call's arguments,
    along the JSON's structure: jsontext.rewrite)."""
    assert item.texts is not None
    head, data, starts = item.texts
    visit = iter(starts)

    def one(text: str) -> str:
        key, begin, fragment = next(visit)
        if fragment is not None:
            return fragment.rewritten(text, spans.get(key, ()), begin)
        end = begin + len(text)
        out, pos = [], begin
        for start, stop, marker in spans.get(key, ()):
            if stop <= begin or start >= end:
                continue
            out.append(text[pos - begin : max(start, begin) - begin])
            if start >= begin:
                out.append(marker)
            pos = min(stop, end)
        out.append(text[pos - begin :])
        return "".join(out)

    _map_stream_deltas(data, one)
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


class StoredAnswerStream:
    """A streamed stored answer (`fetches_stored_answer`, `?stream=true`), screened as
    StreamScreener screens answers by the policy for the model its first event names (the
    Responses stream's `response.created` carries the response, model included). What comes
    before that event is complete is held (at most STORED_ANSWER_HELD bytes, then the policy for
    any model decides); the same `feed` and `close` as StreamScreener's."""

    def __init__(self, lookup: ScreenerLookup) -> None:
        self._lookup = lookup
        self._held = b""
        self._decided = False
        self._stream: StreamScreener | None = None  # None once decided: no policy screens it

    async def feed(self, chunk: bytes) -> bytes:
        if self._decided:
            return await self._stream.feed(chunk) if self._stream is not None else chunk
        self._held += chunk
        model = _first_event_model(self._held)
        if model is None and len(self._held) < STORED_ANSWER_HELD:
            return b""
        return await self._decide(model or "")

    async def close(self) -> bytes:
        out = b"" if self._decided else await self._decide(_first_event_model(self._held) or "")
        return out + await self._stream.close() if self._stream is not None else out

    async def _decide(self, model: str) -> bytes:
        self._decided = True
        found = self._lookup(model)
        held, self._held = self._held, b""
        if not screens_response(found):
            return held
        assert found is not None
        self._stream = StreamScreener(found, model)
        return await self._stream.feed(held)


STORED_ANSWER_HELD = 64 * 1024


def _first_event_model(buffer: bytes) -> str | None:
    """The model the first complete event with data names (its `response.model`, else its
    `model`; "" if neither), or None while no such event is complete."""
    at = 0
    while (end := _EVENT_END.search(buffer, at)) is not None:
        event, at = buffer[at : end.start()], end.end()
        found = event.find(b"data:")
        if found < 0:
            continue  # a comment (`: ping`) or a bare `event:` line
        try:
            data = orjson.loads(event[found + 5 :].strip())
        except orjson.JSONDecodeError:
            return ""
        if not isinstance(data, dict):
            return ""
        response = data.get("response")
        model = response.get("model") if isinstance(response, dict) else data.get("model")
        return model if isinstance(model, str) else ""
    return None


class StreamScreener:
    """Screens an SSE answer event by event (its texts: each choice's answer, its reasoning, and
    each tool call's arguments, which are redacted along their JSON: guard.jsontext).

    Each event's new text is redacted on its own (without hold-back); blocking checks also run
    over the recent text of its choice (STREAM_SCREEN_CHARS, at most `window`) when the
    pre-scan of the event and the STREAM_TAIL_CHARS before it fires, so a secret split across
    tokens is still caught. `stream.StreamedText` answers both from what each event added; an
    event whose text nothing can redact passes byte for byte, without re-encoding. A hook that
    screens answers is asked about the recent words each time its `stream_step_chars` more have
    streamed, and at the end (with hold-back, text it has not passed is held for it).

    Without hold-back the tokens before the one that completed a blocked match have been sent.
    With `stream_hold_back_chars` N (and a check that screens answers), events are held, in
    order, until their text lies N characters before the end of the complete words that passed
    the blocking checks: a match of up to N characters is blocked before any of it leaves, and
    redacted as the events are released, over the text around them, however they split it. A
    word that does not end (no space or newline: code, CJK text) is held for at most
    N + STREAM_TAIL_CHARS characters (and the window); past that it passes unscreened, as the
    checks only see complete words until the stream's end. Comments (`: ping`) are not held.
    """

    def __init__(self, screener: Screener, model: str) -> None:
        self.screener = screener
        self.model = model
        self.window = screener.config.stream_window_chars
        self._buffer = b""
        self._searched = 0  # how much of the buffer holds no event end
        first = self._first = _ChoiceText(screener, self.window)  # choice 0, the only one of most streams
        self._choices: dict[int, _ChoiceText] = {0: first}
        self.blocked: str | None = None
        self._anthropic = False  # an Anthropic Messages stream: it ends in its own error event
        hook = screener.config.hook
        self._hooked = screener.answer_checks.hooked
        # The hook is asked each time this much more complete text has streamed (and at the end);
        # at least every half window, so what it is asked about is still in the window
        self._hook_step_chars = min(hook.stream_step_chars, self.window // 2) if hook is not None else 0
        hold_back = screener.config.stream_hold_back_chars
        redacts = bool(screener.redacting(Stage.RESPONSE))
        # Holding back only pays where something can block or redact an answer.
        self._hold_back = hold_back if hold_back > 0 and (first.streamed.can_block or redacts) else 0
        self._hold_limit = min(self.window, hold_back + STREAM_TAIL_CHARS)
        # Held events are redacted as they are released, over the text around them, so a match
        # split over several events is found (without hold-back each event is redacted alone).
        self._redacts_held = bool(self._hold_back) and redacts
        self._held: deque[_Held] = deque()
        # What the last event added (set by _event when holding back, read by _released)
        self._ranges: dict[int, tuple[int, int]] = {}
        self._texts: tuple[bytes, Any, list[tuple[int, int, _Fragment | None]]] | None = None
        # Per tool call's arguments (keys below 0): the JSON state where its streamed text ends,
        # and the escape its last fragment cut (read with the next)
        self._json: dict[int, JsonState] = {}
        self._unread: dict[int, str] = {}
        # Per choice, spans a released batch redacted that reach into text still held
        self._carried: dict[int, list[tuple[int, int, str]]] = {}
        self._ended = False  # the stream's final check passed: nothing is held any more
        self._finished: set[int] = set()  # text streams whose choice ended and passed its final check

    def _choice(self, key: int) -> _ChoiceText:
        choice = self._choices.get(key)
        if choice is None:
            choice = self._choices[key] = _ChoiceText(self.screener, self.window)
        return choice

    async def feed(self, chunk: bytes) -> bytes:
        """Screened bytes to send for this chunk (complete events only, less those held back);
        Blocked ends the stream."""
        if (
            not self._buffer
            and len(chunk) > 2
            and chunk.find(b"\n\n") == len(chunk) - 2
            and 13 not in chunk  # no CR, which could end an event earlier (an int: memchr, ≈10x `b"\r" in`)
        ):  # one whole event
            try:
                event = await self._event(chunk)
            except Blocked as blocked:
                raise self._ending(blocked, []) from None
            return self._released(event) if self._hold_back else event
        out: list[bytes] = []
        self._buffer += chunk
        while True:
            # from just before where the last search stopped: an end may straddle the chunks
            found = _EVENT_END.search(self._buffer, max(0, self._searched - 3))
            if found is None:
                self._searched = len(self._buffer)
                break
            event, self._buffer = self._buffer[: found.end()], self._buffer[found.end() :]
            self._searched = 0
            event = await self._screened(event, out)
            out.append(self._released(event) if self._hold_back else event)
        return b"".join(out)

    def _released(self, event: bytes) -> bytes:
        """The held events (this one last) whose text is now far enough behind the screened words."""
        held = self._held
        ranges, self._ranges = self._ranges, {}
        texts, self._texts = self._texts, None
        if not ranges and event.find(b"data:") < 0:
            # a comment (`: ping`) or an empty event: nothing to screen, and a keep-alive must
            # reach the client while text is held
            return event + self._release() if held else event
        held.append(_Held(event, ranges, texts))
        return self._release()

    def _release(self) -> bytes:
        held = self._held
        batch: list[_Held] = []
        if len(self._choices) == 1:  # the common stream, of one choice: one line
            only_line = self._release_line(0)
            while held and held[0].ranges.get(0, _EMPTY)[1] <= only_line:
                batch.append(held.popleft())
            return self._batch_out(batch)
        lines: dict[int, int] = {}
        while held:
            for key, (_start, end) in held[0].ranges.items():
                line = lines.get(key)
                if line is None:
                    line = lines[key] = self._release_line(key)
                if end > line:
                    break
            else:
                batch.append(held.popleft())
                continue
            break
        return self._batch_out(batch)

    def _batch_out(self, batch: list[_Held]) -> bytes:
        if not batch:
            return b""
        if self._redacts_held:
            self._redact_batch(batch)
        return batch[0].event if len(batch) == 1 else b"".join(h.event for h in batch)

    def _release_line(self, key: int) -> int:
        """Where a choice's text may be released up to."""
        if self._ended or key in self._finished:
            return _UNKNOWN_END
        choice = self._choices[key]
        streamed = choice.streamed
        line = streamed.words_end - self._hold_back
        if streamed.end - self._hold_limit > line:
            line = streamed.end - self._hold_limit  # a run without a space: held up to the limit
        elif self._hooked and choice.hooked_to < line:
            line = choice.hooked_to  # (text the hook has not passed yet is held for it)
        # Redacting on release screens the text around each batch: releasing in steps of
        # RELEASE_STEP_CHARS screens it once per step, not once per word
        return line - line % RELEASE_STEP_CHARS if self._redacts_held else line

    def _redact_batch(self, batch: list[_Held]) -> None:
        """Redact the events about to be released. Per choice, their text is screened with up to
        hold-back + REDACT_CONTEXT_CHARS characters before it and the held text after it (up to
        the complete words' end), so a match is found whole however the events split it; a match
        that began in text already sent has only its part in these events removed, and one
        that reaches into text still held is removed there too when that is released. An event
        whose text starts before the window (longer than it) is redacted on its own."""
        spans: dict[int, list[tuple[int, int, str]]] = {}
        kinds: set[str] = set()
        bounds: dict[int, tuple[int, int]] = {}
        alone: list[_Held] = []
        for item in batch:
            for key, (start, end) in item.ranges.items():
                if start < self._choices[key].streamed.window_start:
                    alone.append(item)
                    break
                first, last = bounds.get(key, (start, end))
                bounds[key] = (min(first, start), max(last, end))
        for key, (first, last) in bounds.items():
            found = self._spans(key, first, last, kinds)
            if found:
                spans[key] = found
        for item in alone:
            if item.texts is not None:
                head, data, starts = item.texts
                fragments = [fragment for _, _, fragment in starts]
                item.event = self._redacted(head, data, item.event, _map_stream_deltas, fragments)
                item.texts = None
        if not spans:
            return
        # as Screener.screen logs what an event's own redaction found
        log.info(
            "guard %s response: %s (redact, held events)", self.screener.config.name, ", ".join(sorted(kinds))
        )
        for item in batch:
            if item.texts is not None and any(
                a < end and b > start
                for key, (start, end) in item.ranges.items()
                for a, b, _ in spans.get(key, ())
            ):
                item.event = _rewritten(item, spans)

    def _spans(self, key: int, first: int, last: int, kinds: set[str]) -> list[tuple[int, int, str]]:
        """What to redact of one choice's text from `first` to `last` (absolute positions)."""
        streamed = self._choices[key].streamed
        carried = [span for span in self._carried.get(key, ()) if span[1] > first]
        text_from = max(streamed.window_start, first - self._hold_back - REDACT_CONTEXT_CHARS)
        text_to = max(last, streamed.end if self._ended or key in self._finished else streamed.words_end)
        text = streamed.between(text_from, text_to)
        spans = list(carried)
        # (the pre-scan's triggers first: an address written "jane [at] gmail [dot] com" or
        # with a full-width '＠' holds neither an '@' nor a digit)
        kept_to = carried[-1][1] if carried else text_from
        for finding in sorted(self.screener.redactions(text, ANSWER_STAGE), key=lambda f: f.start):
            start, stop = text_from + finding.start, text_from + finding.end
            if start < kept_to:
                continue  # overlaps one kept (as `screen.redact` does)
            kept_to = stop
            if start < last and stop > first:
                spans.append((start, stop, f"[REDACTED:{finding.kind}]"))
                kinds.add(f"{finding.check}:{finding.kind}")
        self._carried[key] = [span for span in spans if span[1] > last]
        return spans

    async def close(self) -> bytes:
        """At the answer's end (the model server closed it): an unfinished event screened as if
        it were whole, the stream's final check if no `[DONE]` (or final event) ran it, then
        what was held back. Blocked if the final check blocks."""
        out: list[bytes] = []
        rest, self._buffer, self._searched = self._buffer, b"", 0
        if rest.strip():
            event = await self._screened(rest, out)
            out.append(self._released(event) if self._hold_back else event)
        if not self._ended:
            try:
                await self._final_check()
            except Blocked as blocked:
                raise self._ending(blocked, out) from None
            if self._held:
                out.append(self._release())
        return b"".join(out) if out else rest  # (rest: nothing, or blank lines)

    async def _screened(self, event: bytes, passed: list[bytes]) -> bytes:
        """One event screened; a block carries what this chunk `passed` before it and the
        stream's own final event."""
        try:
            return await self._event(event)
        except Blocked as blocked:
            raise self._ending(blocked, passed) from None

    def _ending(self, blocked: Blocked, passed: list[bytes]) -> Blocked:
        final = anthropic_error_event(blocked.reason) if self._anthropic else None
        return Blocked(blocked.reason, b"".join(passed), final)

    def flush(self) -> bytes:
        """The bytes of an unfinished event, as they came (`close` screens them)."""
        rest, self._buffer, self._searched = self._buffer, b"", 0
        return rest

    async def _final_check(self) -> None:
        """At the stream's end: each choice's last word, held back from the per-event checks, is screened now."""
        for choice in self._choices.values():
            if text := choice.streamed.text:
                await self._screen_whole(text)
        self._ended = True

    async def _finish_choices(self, data: Any) -> None:
        """Choices this chunk ends (`finish_reason`) get their final check now, and their held
        text goes: a choice ending mid-word would otherwise hold back every other choice's
        events behind its own until the stream's end."""
        for key in _finished_choices(data):
            # its answer, its reasoning and its tool calls
            calls = [k for k in self._choices if k < 0 and tool_choice(k) == key // 2]
            for k in (key, key + 1, *calls):
                choice = self._choices.get(k)
                if choice is not None and k not in self._finished:
                    self._finished.add(k)
                    if text := choice.streamed.text:
                        await self._screen_whole(text)

    async def _screen_whole(self, text: str) -> None:
        whole = await self.screener.screen_async(text, Stage.RESPONSE, self.model)
        if whole.blocked:
            self.blocked = whole.reason
            raise Blocked(whole.reason)

    async def _event(self, event: bytes) -> bytes:
        # An event is "data: ..." (OpenAI chunks) or "event: NAME\ndata: ..." (Responses, Messages).
        at = event.find(b"data:")
        if at < 0:
            return event
        head, payload = event[:at], event[at + 5 :].strip()
        if head and not self._anthropic:
            self._anthropic = head.startswith((b"event: message_", b"event: content_block_"))
        if payload == b"[DONE]":
            await self._final_check()
            return event
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event
        parts = _stream_delta_parts(data)
        if not parts:
            if self._hold_back:
                await self._finish_choices(data)
            return await self._repeats(head, data, event)
        # (a tool call's arguments come last in an event: what each adds to its call's reading)
        fragments: list[_Fragment | None] | None = None
        if parts[-1][0] < 0:  # (the streams hold a call's reading: its escapes decoded)
            if len(parts) == 1:  # (most events of a streamed call: its next fragment alone)
                key, text = parts[0]
                fragment = self._fragment(key, text)
                fragments = [fragment]
                if fragment.read is not text:  # (most fragments read as they are written)
                    parts = [(key, fragment.read)]
            else:
                fragments = [None if k >= 0 else self._fragment(k, t) for k, t in parts]
                parts = [(k, t if f is None else f.read) for (k, t), f in zip(parts, fragments, strict=True)]
        key = parts[0][0]
        if len(parts) == 1 or all(k == key for k, _ in parts):
            new = parts[0][1] if len(parts) == 1 else "".join(t for _, t in parts)
            choice = self._first if key == 0 else self._choice(key)
            streamed = choice.streamed
            streamed.append(new)  # (`_add_text`, inlined: this is every event's path)
            touched: Iterable[_ChoiceText] | None = None  # (one choice: `choice`)
            if self._hold_back:
                self._note_texts(parts, head, data, fragments)
                to_screen = self._triggered(choice) if streamed.tail_may_find() else None
            elif streamed.tail_may_find():
                to_screen = self._triggered(choice)
            elif not self._hooked:
                return event  # nothing in the new text (or just before it) any check could match
            else:
                to_screen = None
        else:
            by_choice: dict[int, list[str]] = {}
            for k, text in parts:
                by_choice.setdefault(k, []).append(text)
            to_screen = None
            for k, texts in by_choice.items():
                found = self._add_text(self._choice(k), "".join(texts))
                if found is not None:
                    to_screen = found if to_screen is None else to_screen + found
            touched = [self._choices[k] for k in by_choice]
            if self._hold_back:
                self._note_texts(parts, head, data, fragments)
        if to_screen is not None:
            for text in to_screen:
                await self._screen_blocking(text)
        if self._hooked:
            for one in (choice,) if touched is None else touched:
                await self._hook_step(one)
        if self._hold_back:
            # held events are redacted when released; a choice that ends here releases its own
            await self._finish_choices(data)
            return event
        if to_screen is None:
            return event  # nothing in the new text (or just before it) any check could match
        for _, text in parts:
            if self.screener.redactions(text, ANSWER_STAGE):  # (found again there: it is rare)
                return self._redacted(head, data, event, _map_stream_deltas, fragments)
        return event

    def _fragment(self, key: int, text: str) -> _Fragment:
        """What a fragment of a tool call's arguments (key < 0) adds to the call's reading (its
        escapes decoded; one it ends inside is read with the next), and the JSON state where it
        starts."""
        state = self._json.get(key, jsontext.OUTSIDE)
        self._json[key] = jsontext.advance(text, state)
        backslash = "\\" in text
        # (an escape a fragment cut is kept until the next one reads it: most calls have none)
        unread = self._unread.pop(key, "") if self._unread else ""
        if not unread and not backslash:  # (most fragments: nothing to decode)
            return _Fragment(state, "", len(text), text)
        whole = unread + text
        cut = jsontext.unfinished_escape(whole)
        if cut < len(whole):
            self._unread[key] = whole[cut:]
        return _Fragment(state, unread, cut - len(unread), jsontext.decoded(whole[:cut]))

    def _note_texts(
        self, parts: list[tuple[int, str]], head: bytes, data: Any, fragments: list[_Fragment | None] | None
    ) -> None:
        """Where the event's texts lie in their choices' streams (they were just appended)."""
        ends = {k: c.streamed.end for k, c in self._choices.items()}
        starts: list[tuple[int, int, _Fragment | None]] = []
        for i in range(len(parts) - 1, -1, -1):
            key, text = parts[i]
            ends[key] -= len(text)
            starts.append((key, ends[key], None if fragments is None else fragments[i]))
        starts.reverse()
        self._ranges = {key: (ends[key], self._choices[key].streamed.end) for key, _ in parts}
        if self._redacts_held:
            self._texts = (head, data, starts)

    def _add_text(self, choice: _ChoiceText, new: str) -> list[str] | None:
        """One choice's new text, appended to its stream; what the blocking checks must screen
        now: its recent complete words when the pre-scan fires (the caller screens them). None
        when the pre-scan of the new text and the tail before it fires on nothing: no check
        (blocking or redacting) can find anything there."""
        streamed = choice.streamed
        streamed.append(new)
        return self._triggered(choice) if streamed.tail_may_find() else None

    def _triggered(self, choice: _ChoiceText) -> list[str]:
        """What the blocking checks must screen after the pre-scan of a choice's new text fired."""
        streamed = choice.streamed
        to_screen = _NOTHING
        if streamed.long_text is not None:
            # An event longer than the tail (a server that sends many tokens per event) may
            # start before the recent text does: its complete words are screened whole too.
            if words := complete_words(streamed.long_text):
                to_screen = [words]
        # Blocking checks see complete words only ("password = getpa" is not yet "password =
        # getpass()"), and only the recent text: a match ending in this event starts within it.
        span = streamed.recent_span()
        if span != choice.passed_span:
            first, end = span
            recent = streamed.between(first, end)
            if recent != choice.passed_recent:
                # may_block is False only when the recent text surely does not block; past it the
                # blocking checks alone decide (each event's text is redacted on its own). Passed
                # from now: if the screen blocks, the stream ends.
                if streamed.may_block(first, recent):
                    to_screen = [*to_screen, recent]
                choice.passed_recent = recent
            choice.passed_span = span
        return to_screen

    async def _screen_blocking(self, text: str) -> None:
        """Raise Blocked when `text` blocks (the built-in blocking checks decide; the full screen
        words the reason)."""
        if self.screener.blocks(text, Stage.RESPONSE):
            whole = await self.screener.screen_async(text, Stage.RESPONSE, self.model)
            if whole.blocked:
                self.blocked = whole.reason
                raise Blocked(whole.reason)

    async def _hook_step(self, choice: _ChoiceText) -> None:
        """Ask the hook about a choice's recent complete words once `_hook_step_chars` characters more
        of them have streamed since it last passed them (with any it has not seen, within the
        window): a screening service is a network round trip, which the stream waits for, and
        often billed per call; once per word made a 2,250-character answer 443 calls. The
        stream's final check asks it about the whole window as before."""
        streamed = choice.streamed
        first, end = streamed.recent_span()
        if end - choice.hooked_to < self._hook_step_chars:
            return
        start = max(streamed.window_start, min(first, choice.hooked_to))
        whole = await self.screener.screen_async(streamed.between(start, end), Stage.RESPONSE, self.model)
        if whole.blocked:
            self.blocked = whole.reason
            raise Blocked(whole.reason)
        choice.hooked_to = end

    async def _repeats(self, head: bytes, data: Any, event: bytes) -> bytes:
        """A Responses/Messages event with no new text: the end of the stream, or a whole text
        repeated (`.done` events), which gets the redactions its deltas got."""
        if isinstance(data, dict) and isinstance(kind := data.get("type"), str) and kind in _FINAL_EVENTS:
            await self._final_check()
        return self._redacted(head, data, event, _map_stream_repeats)

    def _redacted(
        self,
        head: bytes,
        data: Any,
        event: bytes,
        texts_of: TextMapper,
        fragments: list[_Fragment | None] | None = None,
    ) -> bytes:
        """The event with what the redacting checks find in each of its texts removed (the same
        bytes when there is nothing). `fragments`: for each text, in `texts_of`'s order, a tool
        call's streamed fragment (its JSON state; a whole text starts outside any), or None."""
        texts: list[str] = []
        texts_of(data, _collector(texts))
        redacted = self._redactions(texts, fragments)
        return self._rewritten_texts(head, data, texts_of, redacted) if redacted else event

    def _redactions(self, texts: list[str], fragments: list[_Fragment | None] | None) -> dict[str, str]:
        """Each text in which a redacting check finds something, and that text redacted (one
        pre-scan per text). What a blocking check finds there does not stop the redaction: the
        stream blocks by its own checks, and until they do (a match ending an event is complete
        only with the next word) the event goes out, redacted."""
        redacted: dict[str, str] = {}
        kinds: set[str] = set()
        for i, text in enumerate(texts):
            read = jsontext.decoded(text) if isinstance(text, JsonText) else text
            findings = self.screener.redactions(read, Stage.RESPONSE)
            if findings:
                if isinstance(text, JsonText):
                    fragment = fragments[i] if fragments is not None and i < len(fragments) else None
                    state = fragment.state if fragment is not None else None
                    starts = jsontext.reading(text)[1]  # (the map, only where there is something to move)
                    found = [(*jsontext.in_text(starts, f.start, f.end), f.kind) for f in findings]
                    redacted[text] = jsontext.redact(text, found, state or jsontext.OUTSIDE)
                else:
                    redacted[text] = redact(text, findings)
                kinds.update(f"{f.check}:{f.kind}" for f in findings)
        if kinds:  # (as Screener.screen logs what it redacts)
            log.info("guard %s response: %s (redact)", self.screener.config.name, ", ".join(sorted(kinds)))
        return redacted

    @staticmethod
    def _rewritten_texts(head: bytes, data: Any, texts_of: TextMapper, redacted: dict[str, str]) -> bytes:
        texts_of(data, lambda text: redacted.get(text, text))
        return head + b"data: " + orjson.dumps(data) + b"\n\n"
