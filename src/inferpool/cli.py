"""The `inferpool` command line: one typer app, each command living next to its layer."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="inferpool",
    help="An inference gateway for self-hosted LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from inferpool.lora.command import lora_syncer  # noqa: E402

app.command("lora-syncer")(lora_syncer)
from inferpool.api.validate import validate  # noqa: E402

app.command("validate")(validate)
from inferpool.gateway.command import serve  # noqa: E402

app.command("serve")(serve)
from inferpool.gateway.pd_sidecar import pd_sidecar  # noqa: E402

app.command("pd-sidecar")(pd_sidecar)
from inferpool.local.command import demo, up  # noqa: E402

app.command("up")(up)
app.command("demo")(demo)
from inferpool.extproc.command import epp  # noqa: E402

app.command("epp")(epp)
from inferpool.sim.cli import sim_command  # noqa: E402

app.command("sim")(sim_command)
from inferpool.observe.top import top  # noqa: E402

app.command("top")(top)
from inferpool.bench.command import bench_app  # noqa: E402

app.add_typer(bench_app, name="bench")
from inferpool.gateway.keys import keys_app  # noqa: E402

app.add_typer(keys_app, name="keys")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
