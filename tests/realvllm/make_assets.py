"""Builds a tiny Llama model directory and PEFT LoRA adapters for the real-vLLM tier.

Run with .venv-vllm's python (it needs torch, transformers, tokenizers and peft, which the
project's own venv does not carry):

    .venv-vllm/bin/python tests/realvllm/make_assets.py OUT_DIR [--adapters lora-a lora-b]

Nothing is downloaded: the tokenizer is trained here on a built-in text, the model config is
written by hand, and vLLM runs it with `--load-format dummy` (random weights), so no weight
file is needed for the base model. Adapters are made by peft on a randomly initialised copy
of the same tiny model, so their shapes match what vLLM expects for this config.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Text to train the tokenizer on: enough distinct words that ordinary English prompts in the
# tests tokenize into real merges rather than single bytes.
CORPUS = """
The quick brown fox jumps over the lazy dog. Hello world, hello there.
What is the best pizza in the world? A good pizza has a thin crust, fresh tomato and basil.
Food review: the pasta was excellent, the service was slow, the dessert was sweet.
Computer aided design fabricator: draw a bracket, extrude the sketch, add a fillet.
You are a helpful assistant. You are terse. Answer the question in one sentence.
System user assistant message content role question answer model adapter request.
One two three four five six seven eight nine ten eleven twelve.
The gateway routes each request to the replica that serves it best.
Inference pool, endpoint picker, scheduler, queue, cache, prefix, token, latency.
""".strip()

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def build_tokenizer(out: Path, vocab_size: int) -> int:
    """Trains a byte-level BPE tokenizer and writes tokenizer.json + tokenizer_config.json.

    Byte-level means any text encodes (no unknown characters), and every id decodes back to
    text, so the model's vocab can equal the tokenizer's size exactly.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[UNK, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": EOS,
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": UNK, "pad_token": EOS}, indent=2)
    )
    return int(tok.get_vocab_size())


def llama_config(vocab_size: int, bos_id: int, eos_id: int):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        # head_dim 64: vLLM's CPU attention kernels reject small head sizes such as 16.
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )


def build_model(out: Path, vocab_size: int) -> None:
    """Writes config.json for the tiny Llama; vLLM fills its weights itself (dummy load)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    cfg = llama_config(vocab_size, tok.token_to_id(BOS), tok.token_to_id(EOS))
    cfg.save_pretrained(str(out))
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2))


def build_adapter(model_dir: Path, out: Path, seed: int) -> None:
    """Makes one r=8 q_proj/v_proj LoRA adapter with peft on a random tiny Llama."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = AutoConfig.from_pretrained(str(model_dir))
    base = LlamaForCausalLM(cfg)
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        init_lora_weights=False,  # random B as well as A, so the adapter changes the output
    )
    model = get_peft_model(base, lora)
    model.save_pretrained(str(out))
    # save_pretrained records the base model's path; point it at the real model dir.
    cfg_path = out / "adapter_config.json"
    data = json.loads(cfg_path.read_text())
    data["base_model_name_or_path"] = str(model_dir)
    cfg_path.write_text(json.dumps(data, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="directory to write model/ and one folder per adapter into")
    parser.add_argument("--adapters", nargs="*", default=["lora-a", "lora-b"])
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args()

    model_dir = args.out / "tiny-llama"
    model_dir.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(model_dir, args.vocab_size)
    build_model(model_dir, vocab)
    for i, name in enumerate(args.adapters):
        build_adapter(model_dir, args.out / name, seed=1000 + i)
    print(json.dumps({"model": str(model_dir), "vocab_size": vocab, "adapters": args.adapters}))


if __name__ == "__main__":
    main()
