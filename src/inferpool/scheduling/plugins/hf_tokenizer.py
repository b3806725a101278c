"""A model's own tokenizer, as vLLM applies it: tokenizer.json through `tokenizers`, chat through
the model's chat template rendered the way transformers' `apply_chat_template` renders it.

Completions: vLLM tokenizes the prompt with the tokenizer's special tokens (its post-processor
adds BOS where the model wants one). Chat: vLLM renders the messages with the chat template
(`add_generation_prompt` true unless the request says otherwise), then tokenizes the text
without adding special tokens (the template writes BOS itself; a request can ask for
`add_special_tokens`).

The template comes from the files next to tokenizer.json, as transformers loads them:
`chat_template.jinja` when present, else `chat_template` in tokenizer_config.json (a string, or
a list of named templates of which "default" is used). Rendering matches transformers'
`_compile_jinja_template`: an ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks,
the loopcontrols extension, `raise_exception` and `strftime_now` globals, a `tojson` filter
that does not escape HTML, and the special tokens (bos_token, eos_token, ...) as variables.

What is not reproduced returns None, so the scorer falls back to the approximate score rather
than guess: message content given as a list of parts (vLLM's content-format detection and
multimodal placeholders), a request-supplied `chat_template`, `continue_final_message`.

Tokenizing is the costly step (a long prompt seen for the first time: milliseconds), and
`tokenizers`' `encode` holds the GIL while `encode_batch` releases it: `prompt_ids_off_loop`
tokenizes what the prefix store lacks with `encode_batch` in a worker thread, so the event loop
relays other requests' bytes meanwhile; rendering and the store stay on the loop's thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from inferpool.scheduling.plugins.prefix_store import BOUNDARY, PrefixTokenStore, TokenPlan

# The special tokens transformers passes to the template (PreTrainedTokenizerBase.special_tokens_map).
SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


class ChatTemplateError(ValueError):
    """The model's tokenizer files are unusable (bad JSON, a template that does not compile)."""


def _token_text(value: object) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _tojson(
    x: object,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    # transformers overrides jinja's tojson, which would escape HTML characters
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def load_chat_template(tokenizer_json: Path) -> tuple[str | None, dict[str, str]]:
    """(chat template or None, special tokens) from the files beside `tokenizer_json`."""
    folder = tokenizer_json.parent
    config: dict[str, Any] = {}
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        try:
            loaded = json.loads(config_path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ChatTemplateError(f"{config_path}: not readable JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise ChatTemplateError(f"{config_path}: not a JSON object")
        config = loaded
    specials = {name: text for name in SPECIAL_TOKEN_NAMES if (text := _token_text(config.get(name)))}
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text("utf-8"), specials
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: transformers uses "default" for chat
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return (template if isinstance(template, str) else None), specials


def completion_prompt(body: Mapping[str, Any]) -> str | list[int] | None:
    """The (first) prompt of a completion body, as text or token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return prompt
        first = prompt[0]
        if isinstance(first, list) and all(isinstance(t, int) for t in first):
            return first
        prompt = first
    return prompt if isinstance(prompt, str) else None


# Normalizers that act on single characters: none joins or inserts across a space between letters.
_LOCAL_NORMALIZERS = frozenset({"NFC", "NFD", "NFKC", "NFKD", "Lowercase"})


def splits_between_words(tokenizer_json: Path) -> bool:
    """Whether tokenizing text in segments cut at prefix_store.BOUNDARY ("a b") gives the same
    ids as the whole text: byte-level BPE behind a regex pre-tokenizer (GPT-2, Llama-3, Qwen,
    Mistral-Nemo: the space starts a piece, and BPE merges only within a piece), no prefix space
    added, character-local normalizers only, and no added token that strips whitespace, must be a
    single word or holds such a boundary itself. SentencePiece-style files (a `▁` prepended or
    spaces replaced) are not cut: each would gain a prefix at every cut."""
    try:
        spec = json.loads(tokenizer_json.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(spec, dict) or (spec.get("model") or {}).get("type") != "BPE":
        return False
    if spec.get("truncation") or spec.get("padding"):
        return False
    normalizer = spec.get("normalizer")
    if normalizer is not None:
        if not isinstance(normalizer, dict):
            return False
        parts = normalizer.get("normalizers") or [] if normalizer.get("type") == "Sequence" else [normalizer]
        if any(not isinstance(n, dict) or n.get("type") not in _LOCAL_NORMALIZERS for n in parts):
            return False
    pre = spec.get("pre_tokenizer") or {}
    if not isinstance(pre, dict):
        return False
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if not steps or not isinstance(steps[-1], dict) or steps[-1].get("type") != "ByteLevel":
        return False
    if any(not isinstance(p, dict) or p.get("type") not in ("Split", "ByteLevel") for p in steps):
        return False
    if any(p.get("type") == "ByteLevel" and p.get("add_prefix_space") for p in steps):
        return False
    for added in spec.get("added_tokens") or []:
        if not isinstance(added, dict):
            return False
        if added.get("lstrip") or added.get("rstrip") or added.get("single_word"):
            return False
        if BOUNDARY.search(str(added.get("content", ""))):
            return False
    return True


# Cut into short segments and compared with the whole: a tokenizer whose pre-tokenizer regex
# does not start a piece at "a b" after all is caught here, at load, not by wrong routing.
_PROBE = (
    "Hello world, the cache's 12 blocks aren't here.\n\nAnswer:  two  spaces\tand tabs; "
    "CamelCase words, x-y z_w, naïve café résumé ünïcode 日本語 text, émoji 🙂 ok.\n"
    "<|im_start|>user\nplease don't   stop\n"
)
_PROBES = (_PROBE, _PROBE * 3, "a b  c d\ne f g'h i's j 1 k " * 4)


def _store_agrees(encode: Callable[[str], list[int]]) -> bool:
    probe = PrefixTokenStore(encode, segment_chars=1)  # a cut at every boundary
    return all(probe.encode(text) == encode(text) for text in _PROBES)


def _special_tokens_around(tokenizer: Any) -> tuple[list[int], list[int]] | None:
    """What the post-processor adds before and after a text (e.g. BOS), or None if it is not
    a plain frame around the text's own ids."""
    plain = tokenizer.encode("a b", add_special_tokens=False).ids
    framed = tokenizer.encode("a b", add_special_tokens=True).ids
    for i in range(len(framed) - len(plain) + 1):
        if framed[i : i + len(plain)] == plain:
            return list(framed[:i]), list(framed[i + len(plain) :])
    return None


class HFPromptTokenizer:
    """The token ids vLLM computes for a request body, from the model's tokenizer files."""

    def __init__(self, path: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        tokenizer_json = Path(path)
        try:
            self._tokenizer = HFTokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise ChatTemplateError(f"{tokenizer_json}: not a tokenizer.json ({exc})") from None
        # Shared prefixes tokenized once, where this tokenizer splits words as the store assumes
        self.store: PrefixTokenStore | None = None
        self._specials: tuple[list[int], list[int]] | None = None  # (before, after) the text
        self._worker: ThreadPoolExecutor | None = None  # made on the first prompt tokenized off the loop
        if splits_between_words(tokenizer_json):
            self.store = PrefixTokenStore(self._encode_plain)
            self._specials = _special_tokens_around(self._tokenizer)
            if not _store_agrees(self._encode_plain):
                self.store = None
        template, self.special_tokens = load_chat_template(tokenizer_json)
        self._template = None
        if template is not None:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
            )
            env.filters["tojson"] = _tojson
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = _strftime_now
            try:
                self._template = env.from_string(template)
            except jinja2.TemplateError as exc:
                raise ChatTemplateError(
                    f"{tokenizer_json.parent}: chat template does not compile ({exc})"
                ) from None

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        plan = self._plan(text, add_special_tokens)
        if plan is None:
            return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)
        return self._joined(plan, [self._encode_plain(piece) for piece in plan.missing], add_special_tokens)

    async def encode_off_loop(self, text: str, *, add_special_tokens: bool, min_chars: int) -> list[int]:
        """`encode`, with the tokenizing in a worker thread when at least `min_chars` of the
        text are not in the prefix store (less is done here: a thread hop costs more)."""
        plan = self._plan(text, add_special_tokens)
        if plan is None:
            if len(text) < min_chars:
                return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)
            return (await self._in_worker([text], add_special_tokens))[0]
        if plan.missing_chars < min_chars:
            tokenized = [self._encode_plain(piece) for piece in plan.missing]
        else:
            tokenized = await self._in_worker(plan.missing, False)
        return self._joined(plan, tokenized, add_special_tokens)

    def _plan(self, text: str, add_special_tokens: bool) -> TokenPlan | None:
        """The store's plan for the text, or None where the store cannot give its ids (no store,
        or special tokens that are not a plain frame around the text)."""
        if self.store is None or (add_special_tokens and self._specials is None):
            return None
        return self.store.plan(text)

    def _joined(self, plan: TokenPlan, tokenized: list[list[int]], add_special_tokens: bool) -> list[int]:
        assert self.store is not None
        ids = self.store.join(plan, tokenized)
        if add_special_tokens:
            assert self._specials is not None
            before, after = self._specials
            return [*before, *ids, *after]
        return ids

    async def _in_worker(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        if self._worker is None:  # one thread: first-seen long prompts are few
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inferpool-tokenize")
        tokenizer = self._tokenizer

        def encode_batch() -> list[list[int]]:
            # A batch of one per piece: `encode_batch` lets go of the GIL, and a batch of one runs
            # on this thread only (a larger one spreads over every core, the event loop's too).
            return [
                tokenizer.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids for text in texts
            ]

        return await asyncio.get_running_loop().run_in_executor(self._worker, encode_batch)

    def _encode_plain(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def render_chat(self, body: Mapping[str, Any]) -> str | None:
        """The chat as vLLM renders it for the model, or None where that is not reproduced here."""
        messages = body.get("messages")
        if self._template is None or not isinstance(messages, list):
            return None
        if body.get("system") is not None:
            return None  # Anthropic Messages: vLLM's conversion to a chat is not reproduced
        if body.get("chat_template") is not None or body.get("continue_final_message"):
            return None
        if not all(isinstance(m, dict) and isinstance(m.get("content", ""), str | None) for m in messages):
            return None  # content parts: vLLM's content-format detection is not reproduced
        kwargs = body.get("chat_template_kwargs")
        extra = dict(kwargs) if isinstance(kwargs, dict) else {}
        import jinja2

        try:
            return self._template.render(
                {
                    **self.special_tokens,
                    **extra,
                    "messages": messages,
                    "tools": body.get("tools"),
                    "documents": body.get("documents"),
                    "add_generation_prompt": body.get("add_generation_prompt", True),
                }
            )
        except jinja2.TemplateError:
            return None  # vLLM answers this request with an error; nothing will be cached

    def prompt_ids(self, body: Mapping[str, Any]) -> list[int] | None:
        prompt = self._prompt(body)
        if prompt is None or isinstance(prompt, list):
            return prompt
        text, add_special_tokens = prompt
        return self.encode(text, add_special_tokens=add_special_tokens)

    async def prompt_ids_off_loop(self, body: Mapping[str, Any], min_chars: int) -> list[int] | None:
        """`prompt_ids`, tokenizing in a worker thread when `min_chars` or more are new."""
        prompt = self._prompt(body)
        if prompt is None or isinstance(prompt, list):
            return prompt
        text, add_special_tokens = prompt
        return await self.encode_off_loop(text, add_special_tokens=add_special_tokens, min_chars=min_chars)

    def _prompt(self, body: Mapping[str, Any]) -> tuple[str, bool] | list[int] | None:
        """The text vLLM tokenizes and whether it adds the tokenizer's special tokens, or the
        ids a completions request gave, or None where this is not reproduced."""
        if "messages" in body:
            text = self.render_chat(body)
            if text is None:
                return None
            return text, bool(body.get("add_special_tokens", False))
        prompt = completion_prompt(body)
        if isinstance(prompt, str):
            return prompt, bool(body.get("add_special_tokens", True))
        return prompt
