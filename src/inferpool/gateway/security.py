"""The metrics-reader bearer token (the guide creates one), given on the command line or in a file."""

from __future__ import annotations


def read_token(value: str) -> str:
    """A token given as `@FILE` is read from the file (a mounted Secret); anything else is the token."""
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as f:
            return f.read().strip()
    return value
