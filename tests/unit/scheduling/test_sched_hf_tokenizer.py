"""A model's own tokenizer.json and chat template, as vLLM (through transformers) applies them.

No model can be downloaded here: the tests build small tokenizers with `tokenizers` (byte-level
BPE with Llama-3-style and ChatML/Qwen-style special tokens) and write the chat templates of
those model families. Where the real-vLLM venv exists, transformers' own apply_chat_template
is run on the same files and must give the same token ids.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import vllm_env
from inferpool.scheduling.plugins.hf_tokenizer import ChatTemplateError, HFPromptTokenizer
from inferpool.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer, PrecisePrefixParams
from inferpool.state.kvindex import KVBlockIndex, KVEventsSettings

from .conftest import ep, req

tokenizers = pytest.importorskip("tokenizers")


# Meta-Llama-3-8B-Instruct's template (tokenizer_config.json), one line, BOS written by the template.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
# ChatML as Qwen writes it, on several lines: right only with trim_blocks and lstrip_blocks.
QWEN_TEMPLATE = """{% for message in messages %}
{% if loop.first and message['role'] != 'system' %}
<|im_start|>system
You are a helpful assistant.<|im_end|>
{% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endfor %}
  {% if add_generation_prompt %}
<|im_start|>assistant
  {% endif %}
"""
STRICT_TEMPLATE = (
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{{ message['role'] + ': ' + message['content'] | tojson }}{% endfor %}"
)
SPECIALS = [
    "<|begin_of_text|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|im_start|>",
    "<|im_end|>",
]
TEXT = (
    "You are a helpful assistant. The kitchen review says the pasta was good & the sauce <rich>. "
    "Answer the question about the system prompt, the cache and the request. "
) * 20


def build_model_dir(folder: Path, template: str | None, *, jinja_file: bool = False) -> Path:
    """A Llama-like tokenizer.json (BOS added to completions by its post-processor) + tokenizer_config."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([TEXT], trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]
    )
    tok.save(str(folder / "tokenizer.json"))
    config: dict[str, object] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": {  # the AddedToken form older tokenizer_config.json files use
            "__type": "AddedToken",
            "content": "<|begin_of_text|>",
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        },
        "eos_token": "<|eot_id|>",
    }
    if template is not None and jinja_file:
        (folder / "chat_template.jinja").write_text(template)
    elif template is not None:
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder / "tokenizer.json"


MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. "},
    {"role": "user", "content": "The kitchen review says the pasta was good. Answer the question."},
]


def test_llama3_chat_is_rendered_with_bos_from_the_template(tmp_path: Path) -> None:
    hf = HFPromptTokenizer(str(build_model_dir(tmp_path, LLAMA3_TEMPLATE)))
    text = hf.render_chat({"messages": MESSAGES})
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nThe kitchen review says the pasta was good. "
        "Answer the question.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = hf.prompt_ids({"messages": MESSAGES})
    assert ids is not None
    bos = hf.encode("<|begin_of_text|>", add_special_tokens=False)
    assert ids[:1] == bos and ids.count(bos[0]) == 1  # chat: no second BOS from the post-processor
    no_prompt = hf.render_chat({"messages": MESSAGES, "add_generation_prompt": False})
    assert no_prompt is not None and not no_prompt.endswith("assistant<|end_header_id|>\n\n")


def test_qwen_chat_needs_trim_and_lstrip_blocks_as_transformers_sets_them(tmp_path: Path) -> None:
    hf = HFPromptTokenizer(str(build_model_dir(tmp_path, QWEN_TEMPLATE, jinja_file=True)))
    user_only = [MESSAGES[1]]
    assert hf.render_chat({"messages": user_only}) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nThe kitchen review says the pasta was good. Answer the question.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_completions_get_the_post_processors_bos_and_token_ids_pass_through(tmp_path: Path) -> None:
    hf = HFPromptTokenizer(str(build_model_dir(tmp_path, None)))
    ids = hf.prompt_ids({"prompt": "the pasta was good"})
    plain = hf.encode("the pasta was good", add_special_tokens=False)
    assert ids is not None and ids[1:] == plain and len(ids) == len(plain) + 1
    assert hf.prompt_ids({"prompt": [5, 6, 7]}) == [5, 6, 7]
    assert not hf.has_chat_template and hf.prompt_ids({"messages": MESSAGES}) is None


def test_what_is_not_reproduced_falls_back_instead_of_guessing(tmp_path: Path) -> None:
    hf = HFPromptTokenizer(str(build_model_dir(tmp_path / "strict", STRICT_TEMPLATE)))
    assert (
        hf.render_chat({"messages": [MESSAGES[1]]})
        == 'user: "The kitchen review says the pasta was good. Answer the question."'
    )
    assert hf.prompt_ids({"messages": [MESSAGES[1], MESSAGES[1]]}) is None  # raise_exception: vLLM refuses it
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert hf.prompt_ids({"messages": parts}) is None
    assert hf.prompt_ids({"messages": [MESSAGES[1]], "chat_template": "{{ 1 }}"}) is None


def test_bad_tokenizer_files_are_refused_when_the_profile_loads(tmp_path: Path) -> None:
    path = build_model_dir(tmp_path, "{% for m in messages %}")  # unclosed block
    with pytest.raises(ValueError, match="chat template does not compile"):
        PrecisePrefixParams(tokenizer=str(path))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        PrecisePrefixParams(tokenizer=str(path))
    bad = tmp_path / "other" / "tokenizer.json"
    bad.parent.mkdir()
    bad.write_text('{"version": "1.0"}')
    with pytest.raises(ChatTemplateError, match=r"not a tokenizer\.json"):
        HFPromptTokenizer(str(bad))


def test_a_chat_warmed_on_an_endpoint_scores_there_with_the_models_tokenizer(tmp_path: Path) -> None:
    path = build_model_dir(tmp_path, LLAMA3_TEMPLATE)
    scorer = PrecisePrefixCacheScorer(PrecisePrefixParams(tokenizer=str(path)))
    hf = HFPromptTokenizer(str(path))
    body = {"model": "m", "messages": MESSAGES}
    ids = hf.prompt_ids(body)
    assert ids is not None
    block = 4
    index = KVBlockIndex()
    scorer.bind_kv_index(index)
    a, b = ep("e-0"), ep("e-1")
    for endpoint, tokens in ((a, ids), (b, list(reversed(ids)))):
        source = KVEventsSettings().source(endpoint)
        index.set_live(source, True)
        blocks = (len(tokens) - 1) // block
        index.stored(source, list(range(blocks)), None, tokens[: blocks * block], block, None)
    scores = scorer.score(req("flattened", body=body, lora_adapter=False), [a, b])
    assert scores[a] == 1.0 and scores[b] == 0.0


_TEMPLATES = {"llama3": LLAMA3_TEMPLATE, "qwen": QWEN_TEMPLATE, "strict": STRICT_TEMPLATE}


@pytest.mark.skipif(not vllm_env.present(), reason="transformers lives in .venv-vllm (make vllm-env)")
def test_the_same_ids_as_transformers_apply_chat_template(tmp_path: Path, vllm_python: Path) -> None:
    # One interpreter for every template: importing transformers is most of its run (≈8 s here).
    cases = []
    for name, template in _TEMPLATES.items():
        conversation = [MESSAGES[1]] if template == STRICT_TEMPLATE else MESSAGES
        cases.append((name, build_model_dir(tmp_path / name, template), conversation))
    script = (
        "import json, sys; from transformers import AutoTokenizer\n"
        "out = []\n"
        "for path, msgs in json.loads(sys.argv[1]):\n"
        "    tok = AutoTokenizer.from_pretrained(path)\n"
        "    ids = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)\n"
        "    ids = ids['input_ids'] if isinstance(ids, dict) or hasattr(ids, 'keys') else ids\n"
        "    out.append({'chat': list(ids), 'completion': tok('the pasta was good')['input_ids']})\n"
        "print(json.dumps(out))\n"
    )
    pairs = [(str(path.parent), conversation) for _, path, conversation in cases]
    proc = subprocess.run(
        [str(vllm_python), "-c", script, json.dumps(pairs)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    references = json.loads(proc.stdout.strip().splitlines()[-1])
    for (name, path, conversation), reference in zip(cases, references, strict=True):
        hf = HFPromptTokenizer(str(path))
        assert hf.prompt_ids({"messages": conversation}) == reference["chat"], name
        assert hf.prompt_ids({"prompt": "the pasta was good"}) == reference["completion"], name
