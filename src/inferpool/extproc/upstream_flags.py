"""Upstream's EPP command line, as its Go binary parses it, for `inferpool epp`.

Upstream's `inferencepool` chart (and anyone's scripts around it) pass flags the way Go's `flag`
package takes them: one or two dashes (`-v 2`, `--pool-name x`) and booleans as `--name=false`.
Click takes two dashes and `--name/--no-name`; `GoFlagsCommand` rewrites the first form into the
second before Click parses, using the command's own options (nothing listed twice).

The metric flags name Prometheus series the way upstream's do: `name` or `name{label=value,...}`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import typer
from typer.core import TyperOption

from inferpool.clihelp import PlainHelpCommand
from inferpool.scrape.engines import EngineMap, Series, engine_map

if TYPE_CHECKING:  # typer vendors its own click; TyperCommand's methods take its types
    from typer._click import Context

# strconv.ParseBool, which Go's flag package uses for booleans
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def go_style_args(args: list[str], long_names: set[str], booleans: dict[str, str]) -> list[str]:
    """`args` with Go's forms rewritten: `-name` (a long option given one dash) becomes `--name`,
    and `--flag=VALUE` of a boolean becomes `--flag` or its negation (`booleans`: flag -> negation).
    Everything after `--`, and what matches no option, is left for Click to judge."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            name = arg.split("=", 1)[0]
            if name not in long_names and "-" + name in long_names:
                arg = "-" + arg
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) == 2:
            if arg not in long_names and "-" + arg in long_names:
                arg = "-" + arg  # `-v`: upstream's verbosity is a long flag named "v"
        name, eq, value = arg.partition("=")
        if eq and name in booleans:
            if value in _GO_TRUE:
                arg = name
            elif value in _GO_FALSE:
                arg = booleans[name]
            else:
                raise typer.BadParameter(f"{value!r} is not a boolean (true or false)", param_hint=name)
        out.append(arg)
    return out


class GoFlagsCommand(PlainHelpCommand):
    """A typer command that also takes its options as Go's flag package does (module docstring);
    its help is plain text, as upstream's Go binary prints it (inferpool.clihelp)."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        long_names: set[str] = set()
        booleans: dict[str, str] = {}
        for param in self.get_params(ctx):
            if not isinstance(param, TyperOption):
                continue
            long_names.update(param.opts)
            long_names.update(param.secondary_opts)
            if param.is_flag and param.secondary_opts:
                for positive in param.opts:
                    booleans[positive] = param.secondary_opts[0]
        return super().parse_args(ctx, go_style_args(args, long_names, booleans))


_METRIC = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_LABEL = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"?([^"]*)"?\s*$')


def metric_series(spec: str, flag: str) -> Series:
    """A series from upstream's metric spec: `name` or `name{label=value,...}` (values may be quoted,
    and so may the whole spec, as upstream's chart renders `--flag="sglang:num_queue_reqs"`)."""
    bare = spec.strip()
    if len(bare) >= 2 and bare[0] == bare[-1] == '"':
        spec = bare[1:-1]
    found = _METRIC.match(spec)
    if found is None:
        raise ValueError(f"{flag}: {spec!r} is not a metric name, or name{{label=value,...}}")
    name, labels = found.group(1), found.group(2)
    match: list[tuple[str, str]] = []
    for part in (labels or "").split(","):
        if not part.strip():
            continue
        label = _LABEL.match(part)
        if label is None:
            raise ValueError(f"{flag}: {part.strip()!r} in {spec!r} is not label=value")
        match.append((label.group(1), label.group(2)))
    return Series(name, tuple(sorted(match)))


def flag_metric_map(
    queued: str | None = None,
    running: str | None = None,
    kv_usage: str | None = None,
    lora_info: str | None = None,
    base: str = "vllm",
    cache_info: str | None = None,
) -> EngineMap | None:
    """The series upstream's metric flags name, in place of `base`'s (None: no flag given).
    An empty `lora_info` turns LoRA scraping off, as upstream's chart does for Triton.
    `cache_info` names the series whose `block_size` and `num_gpu_blocks` labels give the KV
    cache's size (vLLM's cache_config_info shape); `base`'s own series stay as fallbacks."""
    if queued is None and running is None and kv_usage is None and lora_info is None and cache_info is None:
        return None
    default = engine_map(base)
    lora = default.lora_info
    if lora_info is not None:
        lora = metric_series(lora_info, "--lora-info-metric").name if lora_info else None
    block_size, num_blocks = default.block_size, default.num_blocks
    if cache_info:
        cache = metric_series(cache_info, "--cache-info-metric")
        block_size = (Series(cache.name, cache.match, "block_size"), *block_size)
        num_blocks = (Series(cache.name, cache.match, "num_gpu_blocks"), *num_blocks)
    return EngineMap(
        name=f"{default.name} (metric flags)",
        waiting=_series_or(queued, "--total-queued-requests-metric", default.waiting),
        running=_series_or(running, "--total-running-requests-metric", default.running),
        kv_usage=_series_or(kv_usage, "--kv-cache-usage-percentage-metric", default.kv_usage),
        lora_info=lora,
        block_size=block_size,
        num_blocks=num_blocks,
    )


def _series_or(spec: str | None, flag: str, default: tuple[Series, ...]) -> tuple[Series, ...]:
    return default if spec is None else (metric_series(spec, flag),)
