"""The gateway's lock-free metric families write what prometheus_client's own classes write.

Both are driven with the same label values and observations; the exposition texts must be
equal apart from the `_created` timestamps (each family reads the clock itself)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from inferpool.observe.metrics import _counter, _gauge, _histogram

BUCKETS = (0.005, 0.1, 1.0, 2.5, 60.0)
LABELS = ("model_name", "target_model_name")
label_values = st.tuples(st.sampled_from(["a", "b", 'q"uote']), st.sampled_from(["a", "t\\n"]))
amounts = st.one_of(
    st.sampled_from([0.0, *BUCKETS, 1e9]),  # bounds themselves: `le` is inclusive
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
)
events = st.lists(
    st.tuples(st.sampled_from(["counter", "gauge+", "gauge-", "histogram"]), label_values, amounts)
)


def _text(registry: CollectorRegistry) -> str:
    return re.sub(r"(_created(?:\{[^}]*\})?) \S+", r"\1 T", generate_latest(registry).decode())


@settings(max_examples=150, deadline=None)
@given(events)
def test_same_exposition_as_prometheus_client(steps: list[tuple[str, tuple[str, str], float]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    families = {
        "counter": (
            _counter("c", "a counter", LABELS, ours),
            Counter("c", "a counter", LABELS, registry=theirs),
        ),
        "gauge": (_gauge("g", "a gauge", LABELS, ours), Gauge("g", "a gauge", LABELS, registry=theirs)),
        "histogram": (
            _histogram("h", "a histogram", LABELS, BUCKETS, ours),
            Histogram("h", "a histogram", LABELS, buckets=BUCKETS, registry=theirs),
        ),
    }
    unlabelled = (
        _histogram("u", "no labels", (), BUCKETS, ours).labels(),
        Histogram("u", "no labels", buckets=BUCKETS, registry=theirs),
    )
    for kind, values, amount in steps:
        if kind == "counter":
            for family in families["counter"]:
                family.labels(*values).inc(amount)
        elif kind.startswith("gauge"):
            for family in families["gauge"]:
                child = family.labels(*values)
                child.inc(amount) if kind == "gauge+" else child.dec(amount)
        else:
            for family in families["histogram"]:
                family.labels(*values).observe(amount)
            for child in unlabelled:
                child.observe(amount)
    assert _text(ours) == _text(theirs)


def test_wrong_label_count_is_refused() -> None:
    family = _counter("c", "a counter", LABELS, CollectorRegistry())
    try:
        family.labels("only-one")
    except ValueError as exc:
        assert "takes labels" in str(exc)
    else:
        raise AssertionError("a child with too few label values was made")
