"""A Typer app with just the validate command, so these tests do not depend on every other
command importing cleanly (the subprocess tests cover the real `inferpool` entry point)."""

from __future__ import annotations

import typer

from inferpool.api.validate import validate

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("validate")(validate)


@app.callback()
def _root() -> None:
    """Keep `validate` a subcommand, as in the real CLI."""
