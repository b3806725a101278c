from __future__ import annotations

import io

import orjson

from inferpool.observe.accesslog import AccessEntry, AccessLog


def test_one_json_line_per_entry_without_empty_fields() -> None:
    out = io.StringIO()
    log = AccessLog(out)
    log.write(
        AccessEntry(
            "r1",
            "POST",
            "/v1/completions",
            "default/gw/http",
            200,
            12.5,
            model="food-review",
            target_model="food-review",
            endpoint="127.0.0.1:8000",
            attempts=1,
            scores={"pod-0": {"queue": 1.0}},
            ttft_ms=3.0,
            input_tokens=9,
            output_tokens=16,
        )
    )
    log.write(AccessEntry("r2", "GET", "/nope", "default/gw/http", 404, 0.3, error="No route"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert first["request_id"] == "r1" and first["endpoint"] == "127.0.0.1:8000"
    assert first["scores"] == {"pod-0": {"queue": 1.0}} and first["output_tokens"] == 16
    assert second["status"] == 404 and "model" not in second and "scores" not in second


def test_disabled_log_counts_but_writes_nothing() -> None:
    out = io.StringIO()
    log = AccessLog(out, enabled=False)
    log.write(AccessEntry("r", "GET", "/", "l", 200, 1.0))
    assert log.written == 1 and out.getvalue() == ""
