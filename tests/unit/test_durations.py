"""The three duration grammars: each as its source defines it, and nothing that parsed before changes.

The parsers that inferpool had before inferpool/durations.py are kept below as oracles (`_old_*`):
every input they accepted with a sane value must give the same value now. Budget: under 5 s.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest
import typer
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from inferpool.durations import (
    go_duration_ns,
    parse_cli_duration,
    parse_gateway_duration,
    parse_go_duration,
    parse_go_duration_or_seconds,
)
from inferpool.extproc import command as epp_command
from inferpool.extproc.app import EppConfig

SECOND = 10**9
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
MAX_NS = (1 << 63) - 1
FEW = settings(max_examples=300, deadline=None)

# -- the parsers as they were (api/gateway.py, flowcontrol/config.py, extproc/command.py, bench/stats.py)

_OLD_GATEWAY = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_OLD_GATEWAY_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_OLD_GATEWAY_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _old_gateway(value: str) -> float:
    if not _OLD_GATEWAY.match(value):
        raise ValueError(value)
    return sum(int(n) * _OLD_GATEWAY_UNITS[u] for n, u in _OLD_GATEWAY_PART.findall(value))


_OLD_FLOW_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_OLD_FLOW_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")


def _old_flow_control(value: str | int | float) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _OLD_FLOW_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(value) from None
            seconds = sum(float(n) * _OLD_FLOW_UNITS[u] for n, u in parts)
    if seconds < 0:
        raise ValueError(value)
    return seconds


def _old_epp_flag(value: str) -> float:
    text = value.strip()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    return float(text)


_OLD_CLI = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$")


def _old_cli(text: str) -> float:
    m = _OLD_CLI.match(text)
    if not m:
        raise ValueError(text)
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value


def _accepts(parse: object, value: object) -> float | None:
    try:
        return parse(value)  # type: ignore[operator, no-any-return]
    except ValueError:
        return None


# Text made of what durations are made of, so random strings are often nearly valid.
duration_text = st.text(alphabet="0123456789.hmsun µμ+-e\n", max_size=14)

# -- Gateway API -------------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.integers(0, 99_999), st.sampled_from(["h", "m", "s", "ms"])), min_size=1, max_size=4
    )
)
@FEW
def test_gateway_duration_is_the_sum_of_its_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * _OLD_GATEWAY_UNITS[unit] for n, unit in parts)
    assert parse_gateway_duration(text) == expected


@given(duration_text)
@FEW
def test_gateway_duration_accepts_what_the_crd_pattern_accepts_with_the_same_value(text: str) -> None:
    new = _accepts(parse_gateway_duration, text)
    if text.endswith("\n"):
        # Python's `$` also matches before a final newline; the CRD's pattern (RE2) does not.
        assert new is None
    else:
        assert new == _accepts(_old_gateway, text)


@pytest.mark.parametrize(
    "text", ["1.5s", "10", "-1s", "+1s", "1d", "123456s", "1h1m1s1ms1s", "١s", "10s\n", " 10s"]
)
def test_gateway_duration_stays_strict(text: str) -> None:
    with pytest.raises(ValueError, match="Gateway API format"):
        parse_gateway_duration(text)


# -- Go's time.ParseDuration -------------------------------------------------------------

# Go's own table (src/time/time_test.go, parseDurationTests), in nanoseconds.
GO_ACCEPTS = [
    ("0", 0),
    ("5s", 5 * SECOND),
    ("30s", 30 * SECOND),
    ("1478s", 1478 * SECOND),
    ("-5s", -5 * SECOND),
    ("+5s", 5 * SECOND),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * SECOND),
    ("5.6s", 5 * SECOND + 600_000_000),
    ("5.s", 5 * SECOND),
    (".5s", 500_000_000),
    ("1.0s", SECOND),
    ("1.00s", SECOND),
    ("1.004s", SECOND + 4_000_000),
    ("1.0040s", SECOND + 4_000_000),
    ("100.00100s", 100 * SECOND + 1_000_000),
    ("10ns", 10),
    ("11us", 11_000),
    ("12µs", 12_000),  # U+00B5
    ("12μs", 12_000),  # U+03BC
    ("13ms", 13_000_000),
    ("14s", 14 * SECOND),
    ("15m", 15 * MINUTE),
    ("16h", 16 * HOUR),
    ("3h30m", 3 * HOUR + 30 * MINUTE),
    ("10.5s4m", 4 * MINUTE + 10 * SECOND + 500_000_000),
    ("-2m3.4s", -(2 * MINUTE + 3 * SECOND + 400_000_000)),
    ("1h2m3s4ms5us6ns", HOUR + 2 * MINUTE + 3 * SECOND + 4_000_000 + 5_000 + 6),
    ("39h9m14.425s", 39 * HOUR + 9 * MINUTE + 14 * SECOND + 425_000_000),
    ("52763797000ns", 52_763_797_000),
    ("0.3333333333333333333h", 20 * MINUTE),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", MAX_NS),
    ("9223372036854775.807us", MAX_NS),
    ("9223372036s854ms775us807ns", MAX_NS),
    ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)),
    ("-9223372036s854ms775us808ns", -(1 << 63)),
    ("-2562047h47m16.854775808s", -(1 << 63)),
    ("0.100000000000000000000h", 6 * MINUTE),
    ("0.830103483285477580700h", 49 * MINUTE + 48 * SECOND + 372_539_827),
]
GO_REJECTS = [
    "",
    "3",
    "-",
    "s",
    ".",
    "-.",
    ".s",
    "+.s",
    "1d",
    "\x85\x85",
    "\xffff",
    "hello \xffff world",
    "9223372036854775808ns",
    "9223372036854775.808us",
    "9223372036854ms775us808ns",
    "-9223372036854775809ns",
    "2562047h47m16.854775808s",
    "1 s",
    " 1s",
    "1s ",
    "١s",
    "1e3s",
]


@pytest.mark.parametrize(("text", "ns"), GO_ACCEPTS)
def test_go_duration_matches_go(text: str, ns: int) -> None:
    assert go_duration_ns(text) == ns
    assert parse_go_duration(text) == ns / 1e9


@pytest.mark.parametrize("text", GO_REJECTS)
def test_go_duration_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid Go duration"):
        go_duration_ns(text)


go_part = st.tuples(
    st.integers(0, 10**6),
    st.none() | st.text(alphabet="0123456789", max_size=9),
    st.sampled_from(["ns", "us", "µs", "μs", "ms", "s", "m", "h"]),
)


@given(st.sampled_from(["", "+", "-"]), st.lists(go_part, min_size=1, max_size=4))
@example(
    "", [(562048, None, "h"), (1000000, None, "h"), (1000000, None, "h")]
)  # past int64: found by hypothesis
@FEW
def test_go_duration_is_the_sum_of_its_parts_to_the_nanosecond(
    sign: str, parts: list[tuple[int, str | None, str]]
) -> None:
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 10**6, "s": SECOND, "m": MINUTE, "h": HOUR}
    text = sign + "".join(f"{n}.{f}{u}" if f is not None else f"{n}{u}" for n, f, u in parts)
    exact = sum(Fraction(f"{n}.{f or 0}") * units[u] for n, f, u in parts)
    # Go's Duration is an int64: a sum past it is an error ("out of range"), -2^63 the one extra value
    limit = 2**63 if sign == "-" else 2**63 - 1
    if exact > limit + len(parts):
        with pytest.raises(ValueError, match="out of range"):
            go_duration_ns(text)
        return
    if exact > limit - len(parts):
        return  # on the edge, within the per-part truncation: either answer is Go's
    got = go_duration_ns(text)
    # Go truncates each part's fraction to whole nanoseconds (through a float64 product).
    assert abs(abs(got) - exact) <= len(parts)
    assert got <= 0 if sign == "-" else got >= 0


@given(st.text(max_size=20) | duration_text)
@FEW
def test_go_duration_fails_only_with_value_error(text: str) -> None:
    try:
        go_duration_ns(text)
    except ValueError:
        pass


# -- flags and configuration: a Go duration or a bare number of seconds ------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1m30s", 90.0), ("1.5h", 5400.0), ("300ms", 0.3), ("50ms", 0.05), ("2s", 2.0), ("5", 5.0), ("0.25", 0.25),
     (" 2s ", 2.0), ("0", 0.0), ("1h1m", 3660.0), ("+1s", 1.0), ("12μs", 12e-6), (3, 3.0), (2.5, 2.5)],
)  # fmt: skip
def test_flag_and_config_durations(value: str | int | float, seconds: float) -> None:
    assert parse_go_duration_or_seconds(value) == pytest.approx(seconds, rel=1e-15)


@pytest.mark.parametrize(
    "value", ["-1s", "-5", "-0.5", "1d", "s", "", "nan", "inf", "1_0", "1 s", True, math.inf, -1]
)
def test_flag_and_config_durations_refuse(value: str | int | float) -> None:
    with pytest.raises(ValueError):
        parse_go_duration_or_seconds(value)


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
@FEW
def test_a_bare_number_is_seconds(seconds: float) -> None:
    assert parse_go_duration_or_seconds(repr(seconds)) == seconds
    assert parse_go_duration_or_seconds(seconds) == seconds


def _sane(value: float | None, text: str) -> bool:
    """What the old parsers accepted by accident (nan, inf, other scripts' digits, `1_0`) is not kept."""
    return value is not None and math.isfinite(value) and value >= 0 and text.isascii() and "_" not in text


@given(duration_text | st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{0,3})?(h|m|s|ms|us|µs|ns)([0-9]{1,3}(s|ms))?\Z"))
@FEW
def test_what_flow_control_config_accepted_keeps_its_value(text: str) -> None:
    old = _accepts(_old_flow_control, text)
    if _sane(old, text):
        # Go keeps whole nanoseconds: ".1ns" is 0 (it was 1e-10 s), at most 1 ns per part.
        assert parse_go_duration_or_seconds(text) == pytest.approx(old, rel=1e-12, abs=4e-9)


@given(duration_text | st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{0,3})?(ms|s|m)\Z"))
@FEW
def test_what_the_epp_flags_accepted_keeps_its_value(text: str) -> None:
    old = _accepts(_old_epp_flag, text)
    if _sane(old, text):
        assert parse_go_duration_or_seconds(text) == pytest.approx(old, rel=1e-12)


def test_the_epp_flags_take_what_upstreams_take(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[EppConfig] = []

    async def record(config: EppConfig) -> None:
        seen.append(config)

    monkeypatch.setattr(epp_command, "_run", record)
    app = typer.Typer()
    app.command()(epp_command.epp)
    runner = CliRunner()
    args = [
        "--pool-name",
        "p",
        "--refresh-metrics-interval",
        "1m30s",
        "--metrics-staleness-threshold",
        "1.5h",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (seen[0].refresh_metrics_interval_s, seen[0].metrics_staleness_threshold_s) == (90.0, 5400.0)

    refused = runner.invoke(app, ["--pool-name", "p", "--refresh-metrics-interval", "1d"])
    assert refused.exit_code == 2 and "--refresh-metrics-interval" in refused.output
    assert "Traceback" not in refused.output


# -- bench CLI numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("0.5", 0.5), (" 1 s ", 1.0), (".5ms", 0.0005)]
)
def test_cli_durations(text: str, seconds: float) -> None:
    assert parse_cli_duration(text) == seconds


@given(duration_text | st.from_regex(r"\A\s*[0-9]{0,3}\.?[0-9]{1,3}\s*(ms|s)?\s*\Z"))
@FEW
def test_cli_durations_are_what_they_were(text: str) -> None:
    assert _accepts(parse_cli_duration, text) == _accepts(_old_cli, text)
