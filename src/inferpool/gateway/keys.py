"""`inferpool keys`: manage the API keys file; a new key is printed once and only its hash is kept."""

from __future__ import annotations

from pathlib import Path

import typer

from inferpool.clihelp import PlainHelpCommand, PlainHelpGroup
from inferpool.gateway.auth import ANY_MODEL, KeysFileError, add_key, read_keys_file

keys_app = typer.Typer(
    help="Manage gateway API keys (stored as SHA-256 hashes).", no_args_is_help=True, cls=PlainHelpGroup
)

KEYS_FILE_HELP = "The keys file (YAML); created with mode 0600 if missing."


@keys_app.command("add", cls=PlainHelpCommand)
def keys_add(
    name: str = typer.Argument(..., help="A name for the key (shown in logs and errors, never secret)."),
    keys_file: Path = typer.Option(Path("keys.yaml"), "--keys-file", "-k", help=KEYS_FILE_HELP),
    models: list[str] = typer.Option(
        [], "--models", "-m", help="Model names the key may use (repeatable or comma-separated); default all."
    ),
    rpm: int | None = typer.Option(None, "--rpm", min=1, help="Requests per minute (default unlimited)."),
    tpm: int | None = typer.Option(None, "--tpm", min=1, help="Tokens per minute (default unlimited)."),
    priority: str | None = typer.Option(
        None, "--priority", help="InferenceObjective whose priority this key's requests get."
    ),
) -> None:
    """Add a key and print it once: it is not stored anywhere, only its SHA-256 hash is."""
    names = [m.strip() for item in models for m in item.split(",") if m.strip()] or [ANY_MODEL]
    try:
        key = add_key(keys_file, name, names, rpm, tpm, priority)
    except KeysFileError as err:
        typer.echo(f"inferpool keys add: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(key)
    typer.echo(
        f"added key {name!r} to {keys_file} (models: {', '.join(names)}). "
        "This is the only time the key is shown.",
        err=True,
    )


@keys_app.command("list", cls=PlainHelpCommand)
def keys_list(
    keys_file: Path = typer.Option(Path("keys.yaml"), "--keys-file", "-k", help=KEYS_FILE_HELP),
) -> None:
    """List key names and grants (the keys themselves cannot be shown: only hashes are stored)."""
    try:
        keys = read_keys_file(keys_file)
    except KeysFileError as err:
        typer.echo(f"inferpool keys list: {err}", err=True)
        raise typer.Exit(1) from err
    if not keys:
        what = "has no keys" if keys_file.exists() else "does not exist"
        typer.echo(f"{keys_file} {what}: add one with `inferpool keys add NAME -k {keys_file}`", err=True)
    for k in keys:
        limits = f"rpm={k.rpm or '-'} tpm={k.tpm or '-'}"
        objective = f" objective={k.objective}" if k.objective else ""
        typer.echo(f"{k.name}\tmodels={','.join(k.models)}\t{limits}{objective}\tsha256={k.sha256[:12]}…")
