"""The `inferpool` command line: one typer app, each command living next to its layer.

A command's module is imported only when that command runs, or when help lists it (Click's
lazy-loading pattern): `inferpool sim` does not import the gateway, nor `validate` the
simulator. Each module's imports cost a start of the process 0.2–1 s. The imports are written
out (not module names in strings) so that the layering test sees them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:  # typer vendors its own click; TyperGroup's methods take and return its types
    from typer._click import Command, Context

# The commands, in the order help lists them.
COMMANDS = (
    "lora-syncer",
    "validate",
    "serve",
    "pd-sidecar",
    "up",
    "demo",
    "epp",
    "sim",
    "top",
    "bench",
    "keys",
)


def _load(name: str) -> Callable[..., Any] | typer.Typer:
    """The function of command `name`, or its Typer of commands; its module imported now."""
    match name:
        case "lora-syncer":
            from inferpool.lora.command import lora_syncer

            return lora_syncer
        case "validate":
            from inferpool.api.validate import validate

            return validate
        case "serve":
            from inferpool.gateway.command import serve

            return serve
        case "pd-sidecar":
            from inferpool.gateway.pd_sidecar import pd_sidecar

            return pd_sidecar
        case "up" | "demo":
            from inferpool.local.command import demo, up

            return up if name == "up" else demo
        case "epp":
            from inferpool.extproc.command import epp

            return epp
        case "sim":
            from inferpool.sim.cli import sim_command

            return sim_command
        case "top":
            from inferpool.observe.top import top

            return top
        case "bench":
            from inferpool.bench.command import bench_app

            return bench_app
        case "keys":
            from inferpool.gateway.keys import keys_app

            return keys_app
    raise KeyError(name)


@functools.cache
def click_command(name: str) -> Command:
    """The command `name`, its module imported now."""
    target = _load(name)
    if isinstance(target, typer.Typer):
        command: Command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommands(TyperGroup):
    """The root group: its commands come from COMMANDS, each loaded when asked for."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        return click_command(cmd_name) if cmd_name in COMMANDS else None


app = typer.Typer(
    cls=LazyCommands,
    name="inferpool",
    help="An inference gateway for self-hosted LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    # A callback makes typer build a group, to which LazyCommands adds the commands.
    pass


def main() -> None:
    app()


if __name__ == "__main__":
    main()
