"""The `inferpool` command line: one typer app, each command living next to its layer.

A command's module is imported only when that command runs, or when help lists it (Click's
lazy-loading pattern): `inferpool sim` does not import the gateway, nor `validate` the
simulator. Each module's imports cost a start of the process 0.2–1 s.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:  # typer vendors its own click; TyperGroup's methods take and return its types
    from typer._click import Command, Context

# command name -> "module:attribute", the attribute a command function or a Typer of commands.
COMMANDS: dict[str, str] = {
    "lora-syncer": "inferpool.lora.command:lora_syncer",
    "validate": "inferpool.api.validate:validate",
    "serve": "inferpool.gateway.command:serve",
    "pd-sidecar": "inferpool.gateway.pd_sidecar:pd_sidecar",
    "up": "inferpool.local.command:up",
    "demo": "inferpool.local.command:demo",
    "epp": "inferpool.extproc.command:epp",
    "sim": "inferpool.sim.cli:sim_command",
    "top": "inferpool.observe.top:top",
    "bench": "inferpool.bench.command:bench_app",
    "keys": "inferpool.gateway.keys:keys_app",
}


@functools.cache
def click_command(name: str) -> Command:
    """The command `name`, its module imported now."""
    module, attribute = COMMANDS[name].split(":")
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        command: Command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommands(TyperGroup):
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
