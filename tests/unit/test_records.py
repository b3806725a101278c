"""The request record's lazily built scores behave as the tuple they stand for."""

from __future__ import annotations

import copy
import pickle
import re

import msgspec

from inferpool.records import CandidateScore, LazyScores, RequestRecord, new_request_id

SCORES = (
    CandidateScore("a", "10.0.0.1:8000", 1.5, {"queue": 1.0, "kv": 0.5}),
    CandidateScore("b", "10.0.0.2:8000", 0.5, {"queue": 0.0, "kv": 0.5}),
)


def lazy(built: list[int]) -> LazyScores:
    def build() -> tuple[CandidateScore, ...]:
        built.append(1)
        return SCORES

    return LazyScores(len(SCORES), build)


def test_length_and_truth_without_building() -> None:
    built: list[int] = []
    scores = lazy(built)
    assert len(scores) == 2 and scores and not built
    assert not LazyScores(0, lambda: ())


def test_reads_as_the_tuple_built_once() -> None:
    built: list[int] = []
    scores = lazy(built)
    assert scores == SCORES and SCORES == scores and scores != SCORES[:1]
    assert scores[0] is SCORES[0] and scores[-1] is SCORES[1] and scores[:1] == SCORES[:1]
    assert list(scores) == list(SCORES)
    assert repr(scores) == repr(SCORES) and scores == lazy([])
    assert built == [1]


def test_a_record_with_lazy_scores_copies_pickles_and_compares() -> None:
    record = RequestRecord(
        request_id="r", pool="p", model="m", target_model="m", status=200, started_at=0.0, e2e_s=0.1,
        scores=lazy([]),
    )  # fmt: skip
    plain = msgspec.structs.replace(record, scores=SCORES)
    assert record == plain
    assert pickle.loads(pickle.dumps(record)) == plain
    assert copy.deepcopy(record).scores == SCORES


def test_a_new_request_id_is_128_random_bits_in_hex() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
