"""P/D through the picker (llm-d's split): the prefill endpoint named in a header, a client's
header removed, the prefill leg held and recorded from the sidecar's report."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from inferpool.extproc.stream import RequestStream, StreamConfig
from inferpool.gateway.prefill import (
    PREFILL_REPORT_HEADER,
    PrefillOutcome,
    format_prefill_report,
    parse_prefill_report,
)
from inferpool.request.disagg import PREFILLER_HEADER
from inferpool.state import Endpoint

from .fakes import POOL, FakeRouter, endpoints
from .test_stream import BODY, body_msg, headers_msg, set_headers

PREFILL = Endpoint("prefill-0", "10.0.0.9", 8000, POOL)


def response_headers_msg(**extra: str) -> pb.ProcessingRequest:
    values = {":status": "200", "content-type": "application/json", **extra}
    return pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
            )
        )
    )


async def test_a_split_request_names_its_prefill_endpoint_over_the_clients_choice() -> None:
    router = FakeRouter(endpoints(8001), prefill=[PREFILL])
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg(**{PREFILLER_HEADER: "169.254.169.254:80"}))
    [answer] = await stream.handle(body_msg(BODY))
    mutation = answer.request_body.response.header_mutation
    assert set_headers(answer.request_body.response)[PREFILLER_HEADER] == "10.0.0.9:8000"
    # OVERWRITE_IF_EXISTS_OR_ADD: the client's value is replaced, not appended to
    [option] = [h for h in mutation.set_headers if h.header.key == PREFILLER_HEADER]
    assert option.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    assert PREFILLER_HEADER not in mutation.remove_headers
    assert router.routed[0].events == [
        ("dispatched", "10.0.0.1:8001"),
        ("prefill_dispatched", "10.0.0.9:8000"),
    ]


async def test_an_ordinary_request_loses_a_client_supplied_prefiller_header() -> None:
    router = FakeRouter(endpoints(8001))
    for streamed in (False, True):
        stream = RequestStream(router, POOL, StreamConfig())
        await stream.handle(headers_msg(streamed=streamed, **{PREFILLER_HEADER: "10.0.0.9:8000"}))
        [answer, *_] = await stream.handle(body_msg(BODY))
        common = (answer.request_headers if streamed else answer.request_body).response
        assert list(common.header_mutation.remove_headers) == [PREFILLER_HEADER]
        assert PREFILLER_HEADER not in set_headers(common)


async def test_an_ordinary_request_without_the_header_gets_no_removal() -> None:
    router = FakeRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg())
    [answer] = await stream.handle(body_msg(BODY))
    assert not answer.request_body.response.header_mutation.remove_headers


async def test_the_sidecars_report_is_recorded_and_removed_from_the_answer() -> None:
    router = FakeRouter(endpoints(8001), prefill=[PREFILL])
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg())
    await stream.handle(body_msg(BODY))
    report = format_prefill_report(PrefillOutcome("10.0.0.9:8000", {"do_remote_prefill": True}, 200, 0.0412))
    [answer] = await stream.handle(response_headers_msg(**{PREFILL_REPORT_HEADER: report}))
    assert list(answer.response_headers.response.header_mutation.remove_headers) == [PREFILL_REPORT_HEADER]
    events = router.routed[0].events
    [(status, error, duration, fell_back)] = [e[1] for e in events if e[0] == "prefill_finished"]
    assert (status, error, fell_back) == (200, None, False)
    assert abs(duration - 0.0412) < 1e-9
    # the leg ends before the decode leg's response is counted as started
    names = [e[0] for e in events]
    assert names.index("prefill_finished") < names.index("started")


async def test_a_fallback_report_records_the_failed_leg() -> None:
    router = FakeRouter(endpoints(8001), prefill=[PREFILL])
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg())
    await stream.handle(body_msg(BODY))
    failed = PrefillOutcome("10.0.0.9:8000", None, 503, 0.012, error='prefill answered "HTTP 503"')
    await stream.handle(response_headers_msg(**{PREFILL_REPORT_HEADER: format_prefill_report(failed)}))
    [leg] = [e[1] for e in router.routed[0].events if e[0] == "prefill_finished"]
    assert leg == (503, "prefill answered ?HTTP 503?", 0.012, True)


async def test_an_answer_without_a_report_counts_as_a_local_prefill() -> None:
    router = FakeRouter(endpoints(8001), prefill=[PREFILL])
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg())
    await stream.handle(body_msg(BODY))
    [answer] = await stream.handle(response_headers_msg())
    assert not answer.response_headers.response.header_mutation.remove_headers
    [(status, error, duration, fell_back)] = [
        e[1] for e in router.routed[0].events if e[0] == "prefill_finished"
    ]
    assert status == 0 and fell_back and duration is None
    assert PREFILL_REPORT_HEADER in error


async def test_an_ordinary_answer_is_not_searched_for_a_report() -> None:
    router = FakeRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg())
    await stream.handle(body_msg(BODY))
    [answer] = await stream.handle(response_headers_msg(**{PREFILL_REPORT_HEADER: "ok; status=200; ms=1"}))
    assert not answer.response_headers.response.header_mutation.remove_headers
    assert not [e for e in router.routed[0].events if e[0].startswith("prefill")]


def test_report_round_trip_and_malformed_values() -> None:
    ok = parse_prefill_report("ok; status=200; ms=41.2")
    assert ok is not None and ok.ok and ok.status == 200 and ok.error is None
    assert ok.duration_s is not None and abs(ok.duration_s - 0.0412) < 1e-9
    fallback = parse_prefill_report('fallback; ms=3.0; status=0; error="ClientConnectorError: refused; x"')
    assert fallback is not None and not fallback.ok
    assert (fallback.status, fallback.error) == (0, "ClientConnectorError: refused; x")
    odd = parse_prefill_report("fallback; status=abc; ms=")
    assert odd is not None and odd.status == 0 and odd.duration_s is None
    assert parse_prefill_report("maybe; status=200") is None
    assert parse_prefill_report("") is None
    value = format_prefill_report(PrefillOutcome("h:1", None, 0, 1.0, error="x" * 500 + "\n"))
    assert value.isascii() and "\n" not in value and len(value) < 260
