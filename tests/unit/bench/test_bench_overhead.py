"""`bench overhead` without processes: contender names and accounting modes, CPU lists, the
Envoy-alone config, what the instant backend and the no-op picker answer, and the table
(medians, min…max, added over direct, runs that did not keep up)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from inferpool.bench import overhead, overhead_report
from inferpool.bench.bare_proxy import burn_cpu
from inferpool.bench.compare import streams_by_worker
from inferpool.bench.cpu import (
    cpu_by_process,
    cpu_list,
    cpu_seconds,
    default_split,
    niced,
    parse_cpus,
    pinned,
    process_cpu_seconds,
    set_session_nice,
    waits_by_process,
)
from inferpool.bench.instant_backend import completion_body, metrics_page, stream_event_prefix
from inferpool.bench.native_loadgen import LoadSpec
from inferpool.bench.noop_picker import DESTINATION_HEADER, NoopPicker
from inferpool.bench.overhead import TESTS, Measurement, parse_contenders
from inferpool.extproc.envoy import ACCOUNTING_MODES
from inferpool.scrape.parser import parse_metrics


def test_epp_envoy_alone_runs_every_accounting_mode_and_names_are_unique() -> None:
    chosen = parse_contenders(overhead.DEFAULT_CONTENDERS)
    names = [c.name for c in chosen]
    assert len(names) == len(set(names))
    modes = [c.mode for c in chosen if c.kind == "epp-envoy"]
    assert modes == list(ACCOUNTING_MODES.values())
    assert {"direct", "envoy", "epp-noop-envoy", "bare-aiohttp", "serve default", "serve round-robin"} <= set(
        names
    )
    peers = {(c.peer.package, c.peer.policy) for c in chosen if c.peer is not None}
    assert peers == {(p, policy) for p in overhead.PEERS for policy in ("cache_aware", "round_robin")}
    [streamed] = parse_contenders("epp-envoy:stream")
    assert streamed.mode is not None and streamed.mode.response_body_mode == "FULL_DUPLEX_STREAMED"
    smoke = parse_contenders(overhead.SMOKE_CONTENDERS)
    assert all(c.peer is None for c in smoke)  # the smoke run needs no network install


def test_each_picker_names_its_grpc_server() -> None:
    """`inferpool epp` runs grpc's threaded server by default, the no-op picker grpc.aio; the other
    server of each is its own contender, so both floors can be read in one run."""
    epp, aio, noop, threaded = parse_contenders(
        "epp-envoy:sampled,epp-aio-envoy:sampled,epp-noop-envoy:skip,epp-noop-threaded-envoy:150:skip"
    )
    assert (epp.name, epp.kind, epp.threaded) == ("epp-envoy sampled", "epp-envoy", True)
    assert (aio.name, aio.kind, aio.threaded) == ("epp-aio-envoy sampled", "epp-envoy", False)
    assert (noop.name, noop.kind, noop.threaded, noop.skip_answer) == (
        "epp-noop-envoy skip",
        "epp-noop-envoy",
        False,
        True,
    )
    assert (threaded.name, threaded.kind, threaded.threaded, threaded.work_us, threaded.skip_answer) == (
        "epp-noop-threaded-envoy +150 µs skip",
        "epp-noop-envoy",
        True,
        150,
        True,
    )
    with pytest.raises(ValueError, match="epp-noop-threaded-envoy"):
        parse_contenders("epp-noop-threaded-envoy:x")


def test_a_bare_proxy_with_work_burns_that_much_cpu_per_request() -> None:
    [plain, worked, picker] = parse_contenders("bare-aiohttp,bare-aiohttp:170,epp-noop-envoy:150")
    assert (plain.name, plain.work_us) == ("bare-aiohttp", 0)
    assert (worked.name, worked.kind, worked.work_us) == ("bare-aiohttp +170 µs", "bare-aiohttp", 170)
    assert (picker.name, picker.kind, picker.work_us) == ("epp-noop-envoy +150 µs", "epp-noop-envoy", 150)
    [skip, both] = parse_contenders("epp-noop-envoy:skip,epp-noop-envoy:150:skip")
    assert (skip.name, skip.work_us, skip.skip_answer) == ("epp-noop-envoy skip", 0, True)
    assert (both.name, both.work_us, both.skip_answer) == ("epp-noop-envoy +150 µs skip", 150, True)
    assert not picker.skip_answer
    for bad in ("bare-aiohttp:skip", "epp-noop-envoy:150:foo", "epp-noop-envoy:skip:skip"):
        with pytest.raises(ValueError):
            parse_contenders(bad)
    before = time.thread_time()
    burn_cpu(0.002)
    assert time.thread_time() - before >= 0.002


def test_epp_envoy_with_workers_names_its_worker_count() -> None:
    [one, four] = parse_contenders("epp-envoy:sampled,epp-envoy:sampled:4")
    assert (one.name, one.workers) == ("epp-envoy sampled", 1)
    assert (four.name, four.workers, four.mode) == ("epp-envoy sampled ×4", 4, ACCOUNTING_MODES["sampled"])
    # the closed loop with enough connections to keep workers busy is there on request only
    assert [t.name for t in overhead.parse_tests("closed-256, stream")] == ["closed-256", "stream"]
    assert "closed-256" not in [t.name for t in TESTS]
    for bad in ("", "closed,nope"):
        with pytest.raises(ValueError):
            overhead.parse_tests(bad)


def test_workers_rows_show_the_pickers_own_cpu_and_how_evenly_workers_took_requests() -> None:
    tests = (overhead.LoadTest("closed", 32), overhead.LoadTest("closed-256", 256))
    runs = [
        Measurement("epp", "closed-256", 1, _result(ok=1000), cpu_s=1.0,
                    process_cpu_s={"python 10": 0.0, "python 11": 0.35, "python 12": 0.25, "envoy 13": 0.4},
                    worker_streams={"0": 600.0, "1": 400.0}),
        Measurement("epp", "closed", 1, _result(ok=1000), cpu_s=1.0,
                    process_cpu_s={"python 10": 0.6, "envoy 13": 0.4}, worker_streams={"0": 1000.0}),
        Measurement("serve", "closed", 1, _result(ok=1000), cpu_s=0.5, process_cpu_s={"python 20": 0.5}),
    ]  # fmt: skip
    table = overhead_report.summarize(runs, ["epp", "serve"], tests)
    picker = table["epp"]["picker's CPU µs per request, Envoy's left out (closed-256)"]
    assert picker is not None and picker.median == pytest.approx(600.0)
    spread = table["epp"]["busiest picker worker's requests ÷ mean (closed-256)"]
    assert spread is not None and spread.median == pytest.approx(1.2)
    assert table["epp"]["busiest picker worker's requests ÷ mean (closed loop)"] is None  # one worker
    assert table["serve"]["picker's CPU µs per request, Envoy's left out (closed loop)"] is None  # no Envoy
    both = table["epp"]
    assert both["CPU µs per request (closed loop)"] is not None and both["CPU µs per request (closed-256)"]


def test_the_relays_wait_for_its_core_is_envoys_where_there_is_one() -> None:
    tests = (overhead.LoadTest("paced", 128, events=100, stream=True, pace_ms=5),)
    runs = [
        # Envoy waited 0.2 s over 2,000 runs; the picker's own wait is not the relay's.
        Measurement("epp", "paced", 1, _result(chunks=1000), cpu_s=1.0,
                    process_wait={"python 10": (5.0, 9000), "envoy 13": (0.2, 2000)}),
        Measurement("serve", "paced", 1, _result(chunks=1000), cpu_s=0.5,
                    process_wait={"python 20": (0.01, 500), "python 21": (0.03, 500)}),
        Measurement("direct", "paced", 1, _result(chunks=1000)),
    ]  # fmt: skip
    label = "relay's wait for its core, µs per run (Envoy's where there is one; paced streams)"
    table = overhead_report.summarize(runs, ["direct", "epp", "serve"], tests)
    epp, serve = table["epp"][label], table["serve"][label]
    assert epp is not None and epp.median == pytest.approx(100.0)
    assert serve is not None and serve.median == pytest.approx(40.0)  # no Envoy: every process
    assert table["direct"][label] is None


def test_waits_by_process_reads_this_process_threads_waits_and_runs() -> None:
    import os

    session = os.getsid(0)
    me = f"{Path('/proc/self/comm').read_text().strip()} {os.getpid()}"
    before = waits_by_process([session])
    if not before:
        pytest.skip("this kernel keeps no schedstat")
    time.sleep(0.01)  # a wake-up: at least one more run on a CPU
    after = waits_by_process([session])
    assert after[me][1] > before[me][1] and after[me][0] >= before[me][0] >= 0
    assert waits_by_process([2**22 + 12345]) == {}  # no such session: nothing, not an error


@pytest.mark.parametrize(
    "text",
    ["nginx", "epp-envoy:sampled-typo", "epp-envoy:sampled:0", "epp-envoy:sampled:x", "serve:no-such-profile", "direct,direct", "direct:x",
     "bare-aiohttp:x", "bare-aiohttp:0", "bare-aiohttp:-5", "epp-noop-envoy:0", "epp-noop-envoy:x"],
)  # fmt: skip
def test_unknown_or_repeated_contenders_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_contenders(text)


def test_cpu_lists_parse_like_taskset_and_split_proxy_from_client() -> None:
    assert parse_cpus("0") == {0}
    assert parse_cpus("0-2,5") == {0, 1, 2, 5}
    assert cpu_list(parse_cpus("3,1-2")) == "1,2,3"
    for bad in ("", "a", "3-1", "-1"):
        with pytest.raises(ValueError):
            parse_cpus(bad)
    assert default_split(frozenset({4, 7, 9})) == ({4}, {7})
    assert default_split(frozenset({2})) == ({2}, {2})
    assert pinned(["envoy", "-c", "x"], frozenset({0})) == ["taskset", "-c", "0", "envoy", "-c", "x"]


def test_a_niced_picker_runs_at_that_niceness_and_so_does_its_session() -> None:
    import os
    import subprocess

    assert niced(["x"], 0) == ["x"]
    argv = pinned(niced(["sleep", "30"], 7), frozenset(os.sched_getaffinity(0)))
    child = subprocess.Popen(argv, start_new_session=True)
    try:
        deadline = time.monotonic() + 20  # until taskset and nice have exec'd into sleep
        while Path(f"/proc/{child.pid}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(os.PRIO_PROCESS, 0) + 7
        autogroup = Path(f"/proc/{child.pid}/autogroup")
        if autogroup.exists():  # kernels built with autogroups; the session's own share
            assert set_session_nice(child.pid, 7)
            assert autogroup.read_text().split()[-2:] == ["nice", "7"]
        assert not set_session_nice(2**22 + 12345, 7)  # no such process: False, not an error
    finally:
        child.kill()
        child.wait()


def test_cpu_seconds_of_this_process_session_grow_with_work() -> None:
    import os

    session = os.getsid(0)
    before = cpu_seconds([session])
    deadline = before + 0.05
    while cpu_seconds([session]) < deadline:  # burn ≥ 50 ms of CPU; the clock tick is 10 ms
        sum(i * i for i in range(20_000))
    assert cpu_seconds([session]) >= deadline
    assert cpu_seconds([2**22 + 12345]) == 0.0  # no such session: nothing, not an error
    # the total is the sum of its processes, each named by command and pid
    by_process = cpu_by_process([session])
    me = f"{Path('/proc/self/comm').read_text().strip()} {os.getpid()}"
    assert me in by_process and process_cpu_seconds(os.getpid()) >= by_process[me] > 0
    assert process_cpu_seconds(2**22 + 12345) == 0.0


def test_streams_by_worker_reads_a_pickers_summed_metrics() -> None:
    text = (
        "# HELP inferpool_extproc_streams_total ext_proc streams\n"
        "# TYPE inferpool_extproc_streams_total counter\n"
        'inferpool_extproc_streams_total{worker="0"} 12.0\n'
        'inferpool_extproc_streams_total{worker="1"} 30.0\n'
        'inferpool_extproc_messages_total{kind="request_body"} 42.0\n'
    )
    assert streams_by_worker(text) == {"0": 12.0, "1": 30.0}
    assert streams_by_worker("") == {}


def test_envoy_alone_is_the_reference_config_without_ext_proc_round_robin() -> None:
    config = yaml.safe_load(overhead.envoy_alone_config([8001, 8002], listener=10000, admin=10001))
    [manager] = [
        f["typed_config"] for f in config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
    ]
    assert [f["name"] for f in manager["http_filters"]] == ["envoy.filters.http.router"]
    [pool] = [c for c in config["static_resources"]["clusters"] if c["name"] == "pool_endpoints"]
    assert pool["lb_policy"] == "ROUND_ROBIN" and "load_balancing_policy" not in pool
    ports = [e["endpoint"]["address"]["socket_address"]["port_value"] for e in
             pool["load_assignment"]["endpoints"][0]["lb_endpoints"]]  # fmt: skip
    assert ports == [8001, 8002]


def test_test_bodies_ask_the_backend_for_what_each_test_measures() -> None:
    by_name = {t.name: orjson.loads(t.body("/m")) for t in TESTS}
    assert by_name["closed"] == {"model": "/m", "prompt": "Say something about pizza.", "max_tokens": 16}
    assert by_name["stream"]["stream"] is True and by_name["stream"]["max_tokens"] == 200
    assert by_name["paced"]["pace_ms"] == 5 and by_name["paced"]["stream"] is True
    argv = LoadSpec(b"{}", 2.0, 64, rate=1000).argv(
        overhead.native_loadgen.BINARY, ["127.0.0.1:1", "127.0.0.1:2"]
    )
    assert argv[1:5] == ["--target", "127.0.0.1:1", "--target", "127.0.0.1:2"]
    assert argv[-4:] == ["--mode", "open", "--rate", "1000"]
    assert LoadSpec(b"{}", 1.0, 32).argv(overhead.native_loadgen.BINARY, ["h:1"])[-2:] == ["--mode", "closed"]


def test_instant_backend_answers_look_like_vllm() -> None:
    body = completion_body("m")
    assert 900 <= len(body) <= 1100
    assert orjson.loads(body)["choices"][0]["finish_reason"] == "length"
    event = stream_event_prefix("m") + b"1796229522388106492}"
    assert orjson.loads(event.removeprefix(b"data: "))["ts"] == 1796229522388106492
    metrics = parse_metrics(metrics_page("m", running=3, started=1.7e9).decode())
    assert metrics.running_requests == 3 and metrics.waiting_queue_size == 0
    assert metrics.cache_block_size == 16 and metrics.cache_num_blocks == 16384
    assert metrics.max_active_adapters == 4


async def test_noop_picker_answers_each_message_and_alternates_the_destination() -> None:
    picker = NoopPicker(["10.0.0.1:8000", "10.0.0.2:8000"])
    messages = [
        pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=base_pb2.HeaderMap())),
        pb.ProcessingRequest(request_body=pb.HttpBody(body=b"{}", end_of_stream=True)),
        pb.ProcessingRequest(response_headers=pb.HttpHeaders()),
    ]

    async def stream() -> AsyncIterator[pb.ProcessingRequest]:
        for message in messages:
            yield message

    picks = []
    for _ in range(2):
        answers = [a async for a in picker.Process(stream(), None)]  # type: ignore[arg-type]
        assert [a.WhichOneof("response") for a in answers] == [
            "request_headers",
            "request_body",
            "response_headers",
        ]
        mutation = answers[1].request_body.response.header_mutation.set_headers[0].header
        assert mutation.key == DESTINATION_HEADER and answers[1].request_body.response.clear_route_cache
        picks.append(mutation.raw_value.decode())
    assert picks == ["10.0.0.1:8000", "10.0.0.2:8000"]
    # With work, the body answer comes after that much CPU (thread time) has been spent.
    working = NoopPicker(["10.0.0.1:8000"], work_us=3000)
    before = time.thread_time()
    assert len([a async for a in working.Process(stream(), None)]) == 3  # type: ignore[arg-type]
    assert time.thread_time() - before >= 0.003


def _result(**overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ok": 100, "sent": 100, "completed": 100, "scheduled": 0, "unsent": 0, "elapsed_s": 1.0, "rps": 100.0,
        "events": 0, "events_per_s": 0.0, "chunks": 0, "errors": {"connect": 0, "io": 0, "timeout": 0, "parse": 0},
        "status": {"200": 100}, "latency_ms": {"p50": 1.0, "p99": 2.0},
        "chunk_delay_ms": {"p50": 0.0, "p99": 0.0},
    }  # fmt: skip
    result.update(overrides)
    return result


def test_table_shows_medians_with_range_and_latency_added_over_direct() -> None:
    tests = (overhead.LoadTest("open-200", 64, rate=200), overhead.LoadTest("closed", 32))
    runs = []
    for i, (direct_p50, envoy_p50, rps) in enumerate([(1.0, 1.5, 9000), (2.0, 2.5, 9500), (3.0, 4.5, 8000)]):
        runs += [
            Measurement("direct", "open-200", i, _result(scheduled=200, ok=200, elapsed_s=1.0,
                        latency_ms={"p50": direct_p50, "p99": 5.0})),
            Measurement("envoy", "open-200", i, _result(scheduled=200, ok=200, elapsed_s=1.0,
                        latency_ms={"p50": envoy_p50, "p99": 6.0}), cpu_s=0.1),
            Measurement("direct", "closed", i, _result(rps=20000.0)),
            Measurement("envoy", "closed", i, _result(rps=float(rps), ok=rps), cpu_s=rps * 60e-6,
                        proxy_busy=rps * 60e-6, client_busy=0.9),
        ]  # fmt: skip
    # a round where envoy fell behind at 200 req/s: flagged, and its latency still counted
    behind = _result(scheduled=200, ok=150, elapsed_s=1.0, latency_ms={"p50": 2.5, "p99": 50.0})
    runs.append(Measurement("envoy", "open-200", 3, behind, cpu_s=0.1))
    table = overhead_report.summarize(runs, ["direct", "envoy"], tests)
    p50 = table["envoy"]["open loop 200 req/s: +p50 ms"]
    assert p50 is not None and p50.median == pytest.approx(0.5) and p50.low == pytest.approx(-0.5)
    assert p50.high == pytest.approx(2.5) and p50.rounds == 4 and p50.flagged
    direct = table["direct"]["open loop 200 req/s: +p50 ms"]
    assert direct is not None and direct.median == 2.0 and not direct.flagged  # absolute
    rps = table["envoy"]["closed loop, 32 connections: req/s"]
    assert rps is not None and (rps.median, rps.low, rps.high) == (9000, 8000, 9500)
    cpu = table["envoy"]["CPU µs per request (closed loop)"]
    assert cpu is not None and cpu.median == pytest.approx(60.0)
    assert table["direct"]["CPU µs per request (closed loop)"] is None
    busy = table["envoy"]["proxy CPUs busy % (closed loop)"]
    assert busy is not None and busy.median == pytest.approx(54.0)
    client = table["envoy"]["client + backend CPUs busy % (closed loop)"]
    assert client is not None and client.median == pytest.approx(90.0)

    text = overhead_report.markdown_table(runs, ["direct", "envoy"], tests)
    assert "| measure | direct (absolute) | envoy |" in text
    env = {"nproc": 2, "cpu_model": "x", "kernel": "6", "python": "3.11", "proxy_cpus": "0",
           "client_cpus": "1", "envoy": "1.40", "inferpool": "abc", "rounds": 3, "duration_s": 3.0}  # fmt: skip
    assert "pickers and Envoy at equal CPU shares" in overhead_report.header_lines(env)[1]
    niced_env = {**env, "picker_nice": 10, "autogroups": True}
    assert "pickers at nice 10 (process and session)" in overhead_report.header_lines(niced_env)[1]
    assert "| open loop 200 req/s: +p50 ms | 2.00 (1.00…3.00) | +0.50 (−0.50…+2.50) † |" in text
    assert "| CPU µs per request (closed loop) | — | 60.0 (60.0…60.0) |" in text
    notes = overhead_report.footnotes(runs, tests)
    assert len(notes) == 1 and "did not sustain 200 req/s" in notes[0] and "round 3" in notes[0]


def test_errors_and_non_2xx_answers_get_a_footnote() -> None:
    bad = _result(errors={"connect": 0, "io": 2, "timeout": 0, "parse": 0}, status={"200": 98, "503": 2})
    [note] = overhead_report.footnotes([Measurement("serve default", "closed", 1, bad)])
    assert "'io': 2" in note and "'503': 2" in note


def test_cpu_over_the_bare_proxy_is_paired_by_round() -> None:
    """Each round's CPU per request over the bare proxy's in the same round: a machine that slows
    down for one round moves both sides of that round's ratio, not one side of a median's."""
    tests = (overhead.LoadTest("closed", 32),)
    runs = []
    # round 2 runs on a machine twice as slow: both contenders' CPU doubles
    for round_no, (serve_us, bare_us) in enumerate([(800, 450), (1600, 900), (760, 400)], start=1):
        runs += [
            Measurement("serve", "closed", round_no, _result(ok=1000), cpu_s=serve_us * 1e-3),
            Measurement("bare-aiohttp", "closed", round_no, _result(ok=1000), cpu_s=bare_us * 1e-3),
        ]
    runs.append(Measurement("serve", "closed", 4, _result(ok=1000), cpu_s=5.0))  # no floor that round
    label = "CPU per request ÷ bare-aiohttp's in the same round (closed loop)"
    table = overhead_report.summarize(runs, ["serve", "bare-aiohttp"], tests)
    paired = table["serve"][label]
    assert paired is not None and paired.rounds == 3
    assert paired.median == pytest.approx(800 / 450)
    assert (paired.low, paired.high) == (pytest.approx(1600 / 900), pytest.approx(760 / 400))
    assert table["bare-aiohttp"][label] is None
    text = overhead_report.markdown_table(runs, ["serve", "bare-aiohttp"], tests)
    assert f"| {label} | 1.78 (1.78…1.90) | — |" in text
    assert label not in overhead_report.markdown_table(runs, ["serve"], tests)  # no floor, no row
