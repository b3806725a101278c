"""Durations in the three grammars inferpool reads, each exactly as its source defines it.

- Gateway API `Duration` (GEP-2257), in HTTPRoute timeouts: one to four parts of one to five
  digits and `h`, `m`, `s` or `ms` ("10s", "1m30s", "500ms"); no fraction, no sign.
- Go's `time.ParseDuration`, the grammar of the upstream EPP's flags and configuration: signed
  decimal numbers with optional fractions and units `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`
  ("300ms", "1m30s", "1.5h", "-2m3.4s"; "0" alone needs no unit). Our flags and configuration
  take that or a bare number of seconds, and no negative value (every one is an interval).
- CLI numbers for `inferpool bench` options: seconds or milliseconds ("2s", "500ms", "0.5").

A leaf module: api/ (routes), admission/ and scheduling/ (flow-control configuration),
extproc/ (flags) and bench/ all read durations, so the grammars live below all of them.
"""

from __future__ import annotations

import math
import re

_GATEWAY = re.compile(r"(?:[0-9]{1,5}(?:h|m|s|ms)){1,4}")
_GATEWAY_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_GATEWAY_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

_GO_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_GO_LIMIT = 1 << 63  # Go's Duration is an int64 of nanoseconds
_BARE_SECONDS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

_CLI = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$")


def parse_gateway_duration(text: str) -> float:
    """Seconds in a Gateway API duration, validated by the CRD's pattern; ValueError if malformed."""
    if not _GATEWAY.fullmatch(text):
        raise ValueError(f"invalid duration {text!r} (Gateway API format, e.g. '10s', '1m30s', '500ms')")
    return sum(int(n) * _GATEWAY_UNIT_S[unit] for n, unit in _GATEWAY_PART.findall(text))


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration, as `time.ParseDuration` reads it; ValueError if Go would refuse it."""
    return go_duration_ns(text) / 1e9


def go_duration_ns(text: str) -> int:
    """Nanoseconds, step for step as Go's `time.ParseDuration` (overflow and fraction rounding included)."""
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise _not_go(text)
    total = 0
    while rest:
        if not (rest[0] == "." or _is_digit(rest[0])):
            raise _not_go(text)
        whole, rest, has_whole = _leading_int(rest, text)
        fraction, scale, has_fraction = 0, 1.0, False
        if rest[:1] == ".":
            fraction, scale, rest, has_fraction = _leading_fraction(rest[1:])
        if not has_whole and not has_fraction:
            raise _not_go(text)
        end = 0
        while end < len(rest) and not (rest[end] == "." or _is_digit(rest[end])):
            end += 1
        unit_name, rest = rest[:end], rest[end:]
        unit = _GO_UNIT_NS.get(unit_name)
        if unit is None:
            raise _not_go(text, f"unknown unit {unit_name!r}" if unit_name else "missing unit")
        if whole > _GO_LIMIT // unit:
            raise _not_go(text, "out of range")
        value = whole * unit
        if fraction > 0:
            value += int(float(fraction) * (float(unit) / scale))  # float64, as Go computes it
            if value > _GO_LIMIT:
                raise _not_go(text, "out of range")
        total += value
        if total > _GO_LIMIT:
            raise _not_go(text, "out of range")
    if negative:
        return -total
    if total > _GO_LIMIT - 1:
        raise _not_go(text, "out of range")
    return total


def parse_go_duration_or_seconds(value: str | int | float) -> float:
    """Seconds from a Go duration ("30s", "1m30s", "1500ms") or a bare number of seconds; not negative.

    Flags and configuration files: a number from YAML or argv is seconds, as inferpool always read it.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s or 1500ms")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"{value!r} is not a duration such as 30s, 1m30s or 1500ms")
    else:
        text = value.strip()
        if _BARE_SECONDS.fullmatch(text):
            seconds = float(text)
        else:
            try:
                seconds = parse_go_duration(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a duration such as 30s, 1m30s or 1500ms") from None
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {value!r}")
    return seconds


def parse_cli_duration(text: str) -> float:
    """Seconds from a bench option: '1s', '100ms' or a bare number of seconds ('0.5')."""
    m = _CLI.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 1s or 100ms)")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"  # ASCII only, as Go; str.isdigit() would take other scripts' digits


def _leading_int(text: str, whole_text: str) -> tuple[int, str, bool]:
    value, i = 0, 0
    while i < len(text) and _is_digit(text[i]):
        if value > _GO_LIMIT // 10:
            raise _not_go(whole_text, "out of range")
        value = value * 10 + ord(text[i]) - ord("0")
        if value > _GO_LIMIT:
            raise _not_go(whole_text, "out of range")
        i += 1
    return value, text[i:], i > 0


def _leading_fraction(text: str) -> tuple[int, float, str, bool]:
    """Go's leadingFraction: digits past what an int64 holds are read but ignored."""
    value, scale, i, overflow = 0, 1.0, 0, False
    while i < len(text) and _is_digit(text[i]):
        digit = ord(text[i]) - ord("0")
        i += 1
        if overflow:
            continue
        if value > (_GO_LIMIT - 1) // 10 or value * 10 + digit > _GO_LIMIT:
            overflow = True
            continue
        value = value * 10 + digit
        scale *= 10
    return value, scale, text[i:], i > 0


def _not_go(text: str, why: str = "") -> ValueError:
    detail = f": {why}" if why else ""
    return ValueError(f"invalid Go duration {text!r}{detail} (e.g. 300ms, 1m30s, 1.5h)")
