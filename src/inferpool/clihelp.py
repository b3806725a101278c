"""Command help as plain text, its options grouped under their help panels' names.

typer's rich help lays the options out as a table that cuts long flag names, defaults and
examples to fit the terminal (`--otlp-traces-endpo…`, `epp-envoy[:MODE[:WORKERS…` at 80
columns); click's plain help wraps them instead, and upstream's Go binaries print plain text
too. The root `inferpool --help` keeps typer's panels (a short list of commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:  # typer vendors its own click; its commands' methods take its types
    from typer._click import Context, HelpFormatter


def _option_sections(command: TyperCommand | TyperGroup, ctx: Context, formatter: HelpFormatter) -> None:
    """Each help panel's options under its name ("Options" for those in none), in their order."""
    panels: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            name = getattr(param, "rich_help_panel", None) or (
                "Arguments" if param.param_type_name == "argument" else "Options"
            )
            panels.setdefault(name, []).append(record)
    for name, records in panels.items():
        with formatter.section(name):
            formatter.write_dl(records)


class PlainHelpCommand(TyperCommand):
    """A command whose `--help` is plain text (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rich_markup_mode = None

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        _option_sections(self, ctx, formatter)


class PlainHelpGroup(TyperGroup):
    """A group of commands whose `--help` is plain text (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rich_markup_mode = None

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        _option_sections(self, ctx, formatter)
        self.format_commands(ctx, formatter)
