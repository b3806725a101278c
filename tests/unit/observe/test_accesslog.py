from __future__ import annotations

import io

import orjson

from inferpool.observe.accesslog import AccessLog
from inferpool.records import CandidateScore, HttpFacts, RequestRecord


def test_one_json_line_per_record_without_empty_fields() -> None:
    out = io.StringIO()
    log = AccessLog(out)
    log.write(
        RequestRecord(
            request_id="r1",
            pool="default/pool",
            model="food-review",
            target_model="food-review",
            status=200,
            started_at=1.0,
            e2e_s=0.0125,
            endpoint="pod-0",
            hostport="127.0.0.1:8000",
            attempts=1,
            scores=(CandidateScore("pod-0", "127.0.0.1:8000", 1.0, {"queue": 1.0}),),
            ttft_s=0.003,
            prompt_tokens=9,
            completion_tokens=16,
            http=HttpFacts("POST", "/v1/completions", "default/gw/http"),
        )
    )
    log.write(
        RequestRecord(
            request_id="r2",
            pool=None,
            model="",
            target_model="",
            status=404,
            error="No route",
            started_at=2.0,
            e2e_s=0.0003,
            http=HttpFacts("GET", "/nope", "default/gw/http"),
        )
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert first["request_id"] == "r1" and first["endpoint"] == "127.0.0.1:8000"
    assert first["scores"] == {"pod-0": {"queue": 1.0, "total": 1.0}} and first["output_tokens"] == 16
    assert first["duration_ms"] == 12.5 and first["ttft_ms"] == 3.0 and first["method"] == "POST"
    assert second["status"] == 404 and "model" not in second and "scores" not in second
    assert second["error"] == "No route" and second["listener"] == "default/gw/http"


def test_a_refused_request_names_why_it_was_shed() -> None:
    """A queue TTL's 503 reads as flow control's refusal, not as a failure like an upstream 503."""
    out = io.StringIO()
    log = AccessLog(out)
    for error, shed_reason in (("request timed out in queue", "queue-ttl-expired"), ("upstream 503", None)):
        log.write(
            RequestRecord(
                request_id="r",
                pool="default/pool",
                model="m",
                target_model="m",
                status=503,
                error=error,
                shed_reason=shed_reason,
                started_at=1.0,
                e2e_s=0.5,
            )
        )
    ttl, upstream = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert ttl["status"] == 503 and ttl["shed_reason"] == "queue-ttl-expired"
    assert upstream["status"] == 503 and "shed_reason" not in upstream


def test_disabled_log_counts_but_writes_nothing() -> None:
    out = io.StringIO()
    log = AccessLog(out, enabled=False)
    log.write(
        RequestRecord(
            request_id="r", pool=None, model="", target_model="", status=200, started_at=0.0, e2e_s=0.0
        )
    )
    assert log.written == 1 and out.getvalue() == ""
