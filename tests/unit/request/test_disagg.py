"""The prefill and decode legs' bodies of vLLM's disaggregated protocol (request/disagg.py)."""

from __future__ import annotations

from inferpool.request.disagg import decode_request, prefill_request


def test_prefill_leg_asks_for_one_sequence_without_output_bounds() -> None:
    body = {"model": "m", "prompt": "Hi", "max_tokens": 20, "n": 3, "best_of": 4, "min_tokens": 5}
    leg = prefill_request(body)
    assert leg["n"] == 1 and leg["max_tokens"] == 1
    assert "min_tokens" not in leg and "best_of" not in leg
    assert body["n"] == 3 and body["min_tokens"] == 5  # the client's body is left as sent


def test_prefill_leg_adds_no_n_the_client_did_not_send() -> None:
    assert "n" not in prefill_request({"model": "m", "prompt": "Hi"})


def test_decode_leg_keeps_the_clients_n_and_bounds() -> None:
    body = {"model": "m", "prompt": "Hi", "max_tokens": 20, "n": 3, "min_tokens": 5}
    leg = decode_request(body, {"do_remote_prefill": True})
    assert (leg["n"], leg["min_tokens"], leg["max_tokens"]) == (3, 5, 20)
