"""Tokenizer, block pool and profile loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferpool.errors import InferenceError
from inferpool.sim.kvcache import BlockPool, chain_hashes
from inferpool.sim.profile import load_profile
from inferpool.sim.protocol import parse_json
from inferpool.tokenization import BOS_ID, Tokenizer


def test_tokenizer_is_deterministic_and_about_four_chars_per_token() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 20
    a, b = Tokenizer(), Tokenizer()
    ids = a.encode(text)
    assert ids == b.encode(text)
    assert ids[0] == BOS_ID
    assert 3.0 < len(text) / len(ids) < 5.0
    assert a.decode(ids[1:]) == text
    assert a.decode(ids) == "<s>" + text
    assert a.decode([999_999]) == ""


def test_chat_template_flattens_messages() -> None:
    tok = Tokenizer()
    assert tok.apply_chat_template([("system", "Be terse."), ("user", "Hi")]) == (
        "system: Be terse.\nuser: Hi\nassistant:"
    )


def test_chain_hash_depends_on_parent_and_adapter() -> None:
    a = chain_hashes(list(range(48)), 16, None)
    b = chain_hashes([99, *range(1, 48)], 16, None)
    c = chain_hashes(list(range(48)), 16, "lora")
    assert len(a) == 3
    assert a[0] != b[0] and a[1] != b[1]  # a change in block 0 changes every later hash
    assert not set(a) & set(c)


def test_block_pool_lru_keeps_cached_blocks_until_reused() -> None:
    pool = BlockPool(num_blocks=5, block_size=16)
    blocks = pool.take(2)
    pool.commit(blocks[0], 111)
    pool.commit(blocks[1], 222)
    pool.release(blocks)
    assert pool.num_free == 4 and pool.usage() == 0.0
    assert pool.lookup([111, 222]) == blocks
    pool.take(2)  # the two never-used blocks go first
    assert pool.lookup([111]) == [blocks[0]]
    pool.take(1)  # tail block released first, so 222 is evicted before 111
    assert pool.lookup([111, 222]) == [blocks[0]]


def test_builtin_profile_matches_vllm_defaults() -> None:
    p = load_profile("llama-3.1-8b-h100")
    assert (p.block_size, p.max_num_batched_tokens, p.max_num_seqs, p.max_model_len) == (
        16,
        8192,
        1024,
        131072,
    )
    assert 27_000 <= p.num_gpu_blocks <= 28_700


def test_profile_from_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text("name: small\nnum_gpu_blocks: 100\nmax_model_len: 1024\nstep: {base_ms: 10}\n")
    p = load_profile(str(path))
    assert (p.num_gpu_blocks, p.step.base_ms, p.step.per_token_ms) == (100, 10, 0.0224)
    with pytest.raises(ValueError):
        load_profile("no-such-profile")


def test_bodies_that_are_not_text_get_fastapis_answer_and_an_empty_body_is_missing() -> None:
    # the same words as the gateway's body parser (errors.decode_json_body serves both)
    with pytest.raises(InferenceError) as info:
        parse_json(b'{"prompt":"caf\xe9"}', "application/json")
    assert (info.value.message, info.value.param) == ("There was an error parsing the body", None)
    with pytest.raises(InferenceError) as info:
        parse_json(b"", "application/json")
    assert info.value.param == "body" and "'type': 'missing'" in info.value.message
