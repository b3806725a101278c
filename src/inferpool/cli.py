"""The `inferpool` command line: one typer app, each command living next to its layer.

A command's module is imported only when that command runs (Click's lazy-loading pattern):
`inferpool sim` does not import the gateway, nor `validate` the simulator, and `inferpool
--help` imports none of them. Each module's imports cost a start of the process 0.2–1 s. The
imports are written out (not module names in strings) so that the layering test sees them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:  # typer vendors its own click; TyperGroup's methods take and return its types
    from typer._click import Command, Context, HelpFormatter

# The commands, in the order help lists them, with the line help shows for each: the first
# paragraph of the command's own help, which tests/unit/test_cli.py holds these to (root help
# would otherwise import every command's module to read it, ≈1 s).
COMMANDS = {
    "lora-syncer": "Keep a vLLM server's LoRA adapters matching a vLLMLoRAConfig file (reloaded when it changes).",
    "validate": "Check manifests; each problem is printed as file:line: Kind/name: field: message.",
    "serve": "Serve the Gateway listeners of the manifests, routing to the model servers in --endpoints.",
    "pd-sidecar": "P/D sidecar beside a decode server: runs the prefill leg the picker names in x-prefiller-host-port.",
    "up": "Run the manifests locally: vLLM Deployments as simulated replicas, the Gateway served built in.",
    "demo": "The guide's example (examples/gke-quickstart): 3 simulated Llama-3.1-8B replicas behind the gateway.",
    "epp": "Endpoint Picker for Envoy: ext_proc on 9002, gRPC health on 9003, metrics on 9090.",
    "envoy-config": "Render the reference Envoy config for `inferpool epp` from the pool's manifests, for `envoy -c`.",
    "sim": "Start simulated vLLM replicas that behave like vLLM on one GPU each.",
    "top": "The live dashboard in the terminal: endpoints, models and recent decisions from the admin API.",
    "bench": "Load tests, side-by-side comparisons, virtual-time scale runs.",
    "keys": "Manage gateway API keys (stored as SHA-256 hashes).",
}  # fmt: skip


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
        case "envoy-config":
            from inferpool.extproc.envoy_command import envoy_config

            return envoy_config
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
    from inferpool.clihelp import PlainHelpCommand  # (with the command: root help loads none)

    target = _load(name)
    if isinstance(target, typer.Typer):
        command: Command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        # a command may parse its arguments its own way (epp: upstream's Go-style flags)
        single.command(name, cls=getattr(target, "command_class", None) or PlainHelpCommand)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommands(TyperGroup):
    """The root group: its commands come from COMMANDS, each loaded when asked for; while its
    help is written, a command is only its name and line."""

    _listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in COMMANDS:
            return None
        if self._listing:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name])
        return click_command(cmd_name)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


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
