"""`inferpool validate`: check manifests the way `kubectl apply --dry-run=server` would, offline."""

from __future__ import annotations

from pathlib import Path

import typer

from inferpool.api.loader import ManifestSet, load_manifests


def report(manifests: ManifestSet) -> list[str]:
    """The lines `validate` prints: problems in file order, then ignored objects, then a summary."""
    problems = sorted(manifests.errors + manifests.warnings, key=lambda e: (e.file, e.line))
    lines = [str(problem) for problem in problems]
    lines += [f"note: {ignored}" for ignored in manifests.ignored]
    counts = [
        f"{len(manifests.files)} file(s)",
        f"{manifests.documents} object(s)",
        f"{len(manifests.errors)} error(s)",
        f"{len(manifests.warnings)} warning(s)",
        f"{len(manifests.ignored)} ignored",
    ]
    lines.append(", ".join(counts))
    return lines


def validate(
    files: list[Path] = typer.Option(
        ..., "-f", "--filename", help="Manifest file or directory (repeatable), as for kubectl apply -f."
    ),
) -> None:
    """Check manifests; each problem is printed as file:line: Kind/name: field: message."""
    try:
        manifests = load_manifests([str(f) for f in files])
        lines = report(manifests)
    except Exception as exc:  # a bug must still not show a traceback to the user
        typer.echo(f"inferpool validate: internal error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in lines:
        typer.echo(line)
    raise typer.Exit(1 if manifests.errors else 0)
