"""The prefix token store: a prompt tokenized in cached segments has exactly the ids of the whole.

Checked against the simulator's tokenizer and against byte-level BPE tokenizers built here with
`tokenizers` (GPT-2-style and Llama-3-style pre-tokenizers), on texts made to share prefixes and
to put awkward characters next to the cuts. A SentencePiece-style tokenizer (a `▁` prepended to
the text) would gain a token at every cut: the store must stay off for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferpool.scheduling.plugins.hf_tokenizer import HFPromptTokenizer, splits_between_words
from inferpool.scheduling.plugins.precise_prefix import SimPromptTokenizer
from inferpool.scheduling.plugins.prefix_store import PrefixTokenStore
from inferpool.state.kvindex import ChainKeyCache, KVBlockIndex, chain_keys
from inferpool.tokenization import BOS_ID, Tokenizer

from .test_sched_hf_tokenizer import LLAMA3_TEMPLATE, SPECIALS, TEXT, build_model_dir

tokenizers = pytest.importorskip("tokenizers")

# Llama-3's pre-tokenizer regex (tokenizer.json), as a Split before a regex-free ByteLevel
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PIECES = st.sampled_from(
    ["the", "cache", "a", "b", " ", "  ", "\n", "\n\n", "\t", ",", ".", "'s", "'t", "don", "12", "3",
     "café", "naïve", "日本", "🙂", "x-y", "<|eot_id|>", "<|im_start|>", "Über", "İ", "ß"]
)  # fmt: skip
TEXTS = st.lists(PIECES, min_size=0, max_size=120).map("".join)


def sim_plain(text: str) -> list[int]:
    return Tokenizer(remember_pieces=False).encode(text, add_bos=False)


@settings(max_examples=300, deadline=None)
@given(prefix=TEXTS, tails=st.lists(TEXTS, min_size=1, max_size=4), size=st.sampled_from([1, 5, 16, 64]))
def test_sim_segments_join_to_the_whole(prefix: str, tails: list[str], size: int) -> None:
    tokenizer = Tokenizer(remember_pieces=False)
    store = PrefixTokenStore(lambda t: tokenizer.encode(t, add_bos=False), segment_chars=size)
    for tail in tails:  # prompts sharing a prefix: later ones reuse what earlier ones stored
        text = prefix + tail
        assert store.encode(text) == sim_plain(text)


def test_a_shared_prefix_is_tokenized_once() -> None:
    shared = " ".join(f"word{i} and more text" for i in range(400))  # ≈8,000 characters
    sim = SimPromptTokenizer()
    first = sim.prompt_ids({"prompt": shared + " first question"})
    tokenized = sim.store.tokenized
    assert tokenized >= 25 and sim.store.reused == 0
    second = sim.prompt_ids({"prompt": shared + " second question"})
    assert sim.store.tokenized - tokenized <= 1  # at most the segment the two prompts part in
    assert sim.store.reused >= tokenized - 1
    for body, ids in (
        ({"prompt": shared + " first question"}, first),
        ({"prompt": shared + " second question"}, second),
    ):
        assert ids == [BOS_ID, *sim_plain(body["prompt"])]


def test_the_store_is_bounded() -> None:
    store = PrefixTokenStore(sim_plain, max_segments=10, segment_chars=4)
    store.encode(" ".join(f"w{i}x" for i in range(200)))
    assert len(store) == 10


def build_llama3_like(folder: Path) -> Path:
    """A byte-level BPE with Llama-3's Split regex and special tokens, BOS from the post-processor."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=800, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    assert isinstance(trainer, trainers.BpeTrainer)
    tok.train_from_iterator([TEXT, "naïve café 12345 don't we'll \n\n the cache"], trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]
    )
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_TEMPLATE}
        )
    )
    return folder / "tokenizer.json"


@pytest.fixture(scope="module", params=["gpt2-style", "llama3-style"])
def hf_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "gpt2-style":
        return build_model_dir(folder, LLAMA3_TEMPLATE)
    return build_llama3_like(folder)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=TEXTS, tails=st.lists(TEXTS, min_size=1, max_size=3))
def test_hf_segments_join_to_the_whole(hf_path: Path, prefix: str, tails: list[str]) -> None:
    from tokenizers import Tokenizer as HF

    plain = HF.from_file(str(hf_path))
    hf = HFPromptTokenizer(str(hf_path))
    assert hf.store is not None, "a byte-level BPE tokenizer is cut between words"
    hf.store = PrefixTokenStore(hf.store._encode, segment_chars=8)  # many cuts per text
    for tail in tails:
        text = prefix + tail
        for specials in (False, True):
            assert (
                hf.encode(text, add_special_tokens=specials)
                == plain.encode(text, add_special_tokens=specials).ids
            )


def test_hf_chat_reuses_a_shared_system_prompt(hf_path: Path) -> None:
    from tokenizers import Tokenizer as HF

    plain = HF.from_file(str(hf_path))
    hf = HFPromptTokenizer(str(hf_path))
    assert hf.store is not None
    system = TEXT * 3
    for question in ("What does the review say?", "And the sauce?"):
        body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
        text = hf.render_chat(body)
        assert text is not None
        assert hf.prompt_ids(body) == plain.encode(text, add_special_tokens=False).ids
    assert hf.store.reused >= 10


def test_sentencepiece_style_tokenizers_are_not_cut(tmp_path: Path) -> None:
    """Llama-2's tokenizer.json: `▁` prepended to the text it is given and spaces replaced by
    `▁`, no pre-tokenizer: each segment would start with one `▁` too many."""
    from tokenizers import Tokenizer, models, normalizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"]))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    assert not splits_between_words(path)
    assert HFPromptTokenizer(str(path)).store is None
    # and cutting it would have been wrong: the segments' ids differ from the whole's
    cut = PrefixTokenStore(lambda t: tok.encode(t, add_special_tokens=False).ids, segment_chars=8)
    assert cut.encode(TEXT) != tok.encode(TEXT, add_special_tokens=False).ids


def test_a_pre_tokenizer_that_keeps_words_together_is_caught_at_load(tmp_path: Path) -> None:
    """A Split on newlines only: a whole line is one piece, so BPE learns merges across spaces
    ("e Ġ"). The file looks like the byte-level family; the load-time probe finds the cuts wrong."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    corpus = "Hello world, the cache's blocks aren't here. a b c d e f g h i j k " * 50
    tok.train_from_iterator(
        [corpus], trainers.BpeTrainer(vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    assert splits_between_words(path)  # the file alone does not tell
    assert HFPromptTokenizer(str(path)).store is None


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.lists(st.integers(0, 128_255), max_size=700),
    tails=st.lists(st.lists(st.integers(0, 128_255), max_size=200), min_size=1, max_size=4),
    size=st.sampled_from([1, 4, 16]),
    lora=st.sampled_from([None, "adapter-a"]),
    max_blocks=st.sampled_from([None, 3, 40]),
)
def test_cached_chain_keys_are_the_chain_keys(
    prefix: list[int], tails: list[list[int]], size: int, lora: str | None, max_blocks: int | None
) -> None:
    cache = ChainKeyCache(max_runs=64)
    for tail in tails:  # prompts sharing a prefix: later ones take its runs from the cache
        ids = prefix + tail
        assert cache.keys(ids, size, lora, max_blocks) == chain_keys(ids, size, lora, max_blocks)
        # the same run of bytes after the same prefix, cut into other blocks, chains otherwise
        assert cache.keys(ids, size * 2, lora, max_blocks) == chain_keys(ids, size * 2, lora, max_blocks)


def test_a_shared_prefix_is_hashed_once() -> None:
    cache = ChainKeyCache()
    shared = list(range(16 * 100))
    cache.keys([*shared, 1, 2, 3], 16, None)
    runs = len(cache)
    assert runs == 100 // ChainKeyCache.CACHED_RUN
    cache.keys([*shared, 7, 8, 9], 16, None)
    assert len(cache) == runs  # nothing new: every whole run was the shared prefix's


@settings(max_examples=200, deadline=None)
@given(
    held=st.lists(st.sets(st.integers(0, 11), max_size=12), min_size=1, max_size=4),
    keys=st.lists(st.integers(0, 14), max_size=14),
)
def test_index_match_counts_each_sources_leading_run(held: list[set[int]], keys: list[int]) -> None:
    """KVBlockIndex.match against its definition: per source, how many leading keys it holds,
    counting only while every source still counted holds the key too (a run shared by all)."""
    index = KVBlockIndex(clock=lambda: 0.0)
    sources = [f"s{i}" for i in range(len(held))]
    for source, blocks in zip(sources, held, strict=True):
        index.stored(source, ["setup"], None, [7] * 2, 2, None)  # a live stream with a block size
        index.speculate(source, sorted(blocks), ttl_s=60.0)
    expected: dict[str, int] = dict.fromkeys(sources, 0)
    alive = set(sources)
    for depth, key in enumerate(keys, start=1):
        alive = {s for s in alive if key in held[sources.index(s)]}
        for source in alive:
            expected[source] = depth
    assert index.match(keys, sources) == expected
