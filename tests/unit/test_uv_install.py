"""scripts/uv_install.py: pip's configuration carried over to uv, or pip when it cannot be."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("uv_install", ROOT / "scripts" / "uv_install.py")
assert _spec is not None and _spec.loader is not None
uv_install = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(uv_install)


def _settings_with(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: str, **env: str
) -> dict[str, str]:
    """pip's merged settings with `config` as the only configuration file (plus PIP_* `env`)."""
    conf = tmp_path / "pip.conf"
    conf.write_text(config)
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return uv_install.pip_settings(sys.executable)  # type: ignore[no-any-return]


def test_pip_settings_are_read_as_pip_merges_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = _settings_with(
        monkeypatch,
        tmp_path,
        "[global]\nfind-links = /opt/wheels\nextra-index-url =\n    file:///a/simple\n    file:///b/simple\n"
        "index-url = https://global.example/simple\n[install]\nindex-url = https://install.example/simple\n",
        PIP_DEFAULT_TIMEOUT="180",
        PIP_FIND_LINKS="/env/wheels",
    )
    assert settings["index-url"] == "https://install.example/simple"  # the install section over global
    assert settings["find-links"] == "/env/wheels"  # a PIP_ variable over the files
    assert settings["extra-index-url"].split() == ["file:///a/simple", "file:///b/simple"]
    assert settings["default-timeout"] == "180"


def test_each_setting_becomes_uvs_own() -> None:
    options, env = uv_install.uv_arguments(
        {
            "index-url": "https://idx.example/simple",
            "extra-index-url": "file:///a/simple file:///b/simple",
            "find-links": "/opt/wheels",
            "constraint": "/etc/c.txt",
            "cert": "/etc/ca.crt",
            "default-timeout": "180",
            "disable-pip-version-check": "1",
        }
    )
    assert options[:3] == ["--index-strategy", "unsafe-best-match", "--compile-bytecode"]  # as pip does
    pairs = list(zip(options[3::2], options[4::2], strict=True))
    assert ("--index-url", "https://idx.example/simple") in pairs
    assert ("--extra-index-url", "file:///a/simple") in pairs and (
        "--extra-index-url",
        "file:///b/simple",
    ) in pairs
    assert ("--find-links", "/opt/wheels") in pairs and ("--constraint", "/etc/c.txt") in pairs
    assert env == {"SSL_CERT_FILE": "/etc/ca.crt", "UV_HTTP_TIMEOUT": "180"}


def test_a_setting_uv_cannot_carry_means_pip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert uv_install.uv_arguments({"proxy": "http://proxy.example:3128"}) == (
        "pip setting 'proxy' has no uv equivalent here"
    )
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(uv_install, "pip_settings", lambda python: {"proxy": "http://proxy.example:3128"})
    monkeypatch.setattr(uv_install.subprocess, "run", run)
    assert uv_install.install("/venv/bin/python", ["-q", "-e", ".[test]"]) == 0
    assert calls == [["/venv/bin/python", "-m", "pip", "install", "-q", "-e", ".[test]"]]


def test_a_failing_uv_falls_back_to_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if argv[1:] == ["--version"]:  # no uv in the venv yet
            raise FileNotFoundError(argv[0])
        calls.append(argv)
        failed = argv[0].endswith("/uv")  # uv itself fails; pip (installing uv, then the fallback) works
        return subprocess.CompletedProcess(argv, 2 if failed else 0, "", "")

    monkeypatch.setattr(uv_install, "pip_settings", lambda python: {"find-links": "/opt/wheels"})
    monkeypatch.setattr(uv_install.subprocess, "run", run)
    assert uv_install.install("/venv/bin/python", ["peft"]) == 0
    assert calls[0] == ["/venv/bin/python", "-m", "pip", "install", "-q", uv_install.pinned_uv()]
    assert calls[1][:5] == ["/venv/bin/uv", "pip", "install", "--python", "/venv/bin/python"]
    assert calls[1][-1] == "peft" and "--find-links" in calls[1]
    assert calls[2] == ["/venv/bin/python", "-m", "pip", "install", "peft"]


def test_a_venv_with_the_pinned_uv_is_not_asked_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = uv_install.pinned_uv().partition("==")[2]
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        version = f"uv {pinned} (x86_64-unknown-linux-gnu)\n" if argv[1:] == ["--version"] else ""
        return subprocess.CompletedProcess(argv, 0, version, "")

    monkeypatch.setattr(uv_install, "pip_settings", lambda python: {})
    monkeypatch.setattr(uv_install.subprocess, "run", run)
    assert uv_install.install("/venv/bin/python", ["peft"]) == 0
    assert [argv[:2] for argv in calls] == [["/venv/bin/uv", "--version"], ["/venv/bin/uv", "pip"]]


def test_uv_is_pinned_in_the_test_extra() -> None:
    assert uv_install.pinned_uv().startswith("uv==")
