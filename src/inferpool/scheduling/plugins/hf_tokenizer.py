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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

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


class HFPromptTokenizer:
    """The token ids vLLM computes for a request body, from the model's tokenizer files."""

    def __init__(self, path: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        tokenizer_json = Path(path)
        try:
            self._tokenizer = HFTokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise ChatTemplateError(f"{tokenizer_json}: not a tokenizer.json ({exc})") from None
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
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

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
        if "messages" in body:
            text = self.render_chat(body)
            if text is None:
                return None
            return self.encode(text, add_special_tokens=bool(body.get("add_special_tokens", False)))
        prompt = completion_prompt(body)
        if isinstance(prompt, str):
            return self.encode(prompt, add_special_tokens=bool(body.get("add_special_tokens", True)))
        return prompt
