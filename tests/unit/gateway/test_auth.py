"""API keys: the file keeps only hashes, lookups follow edits, bad files are named precisely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inferpool.cli import app
from inferpool.errors import InferenceError
from inferpool.gateway.auth import (
    ApiKey,
    KeysFileError,
    KeyStore,
    add_key,
    authorize_model,
    bearer_token,
    hash_key,
    parse_keys,
    read_keys_file,
)


def test_add_key_stores_only_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key = add_key(path, "alice", ["food-review"], rpm=10, tpm=1000, objective="critical")
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    (entry,) = read_keys_file(path)
    assert entry == ApiKey("alice", hash_key(key), ("food-review",), 10, 1000, "critical", entry.created)
    second = add_key(path, "bob")
    assert second != key and [k.name for k in read_keys_file(path)] == ["alice", "bob"]
    with pytest.raises(KeysFileError, match="already exists"):
        add_key(path, "alice")


def test_keystore_authenticates_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    alice = add_key(path, "alice", ["food-review"])
    store = KeyStore(path, recheck_s=0.0)
    assert store.authenticate({"authorization": f"Bearer {alice}"}).name == "alice"
    for headers in ({}, {"authorization": "Basic abc"}, {"authorization": "Bearer "}):
        with pytest.raises(InferenceError) as err:
            store.authenticate(headers)
        assert err.value.status == 401 and "didn't provide an API key" in err.value.message
    with pytest.raises(InferenceError) as err:
        store.authenticate({"authorization": "Bearer ipk-wrong"})
    assert err.value.status == 401 and err.value.headers["WWW-Authenticate"].startswith("Bearer")
    bob = add_key(path, "bob")
    os.utime(path, (1, 1))  # make sure the mtime differs even on coarse clocks
    assert store.authenticate({"authorization": f"bearer {bob}"}).name == "bob"
    path.write_text("keys: [{name: x}]")  # broken edit: the last good keys stay in force
    os.utime(path, (2, 2))
    assert store.authenticate({"authorization": f"Bearer {alice}"}).name == "alice"


def test_model_grants() -> None:
    key = ApiKey("a", "0" * 64, ("food-review",))
    authorize_model(key, "food-review")
    authorize_model(ApiKey("b", "0" * 64), "anything")
    with pytest.raises(InferenceError) as err:
        authorize_model(key, "cad-fabricator")
    assert err.value.status == 403 and err.value.body()["error"]["param"] == "model"  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "expected a mapping"),
        ({"keys": [{"sha256": "0" * 64}]}, "name is required"),
        ({"keys": [{"name": "a", "sha256": "xyz"}]}, "64 lower-case hex"),
        ({"keys": [{"name": "a", "sha256": "0" * 64, "rpm": 0}]}, "rpm must be a positive integer"),
        ({"keys": [{"name": "a", "sha256": "0" * 64, "models": []}]}, "models must be"),
        ({"keys": [{"name": "a", "sha256": "0" * 64}, {"name": "a", "sha256": "1" * 64}]}, "duplicate"),
    ],
)
def test_malformed_keys_are_named(data: object, message: str) -> None:
    with pytest.raises(KeysFileError, match=message):
        parse_keys(data, "k.yaml")


def test_bearer_token_parsing() -> None:
    assert bearer_token({"authorization": "Bearer  abc "}) == "abc"
    assert bearer_token({"authorization": "Token abc"}) is None
    assert bearer_token({}) is None


def test_keys_add_command_prints_key_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["keys", "add", "team-a", "-k", str(path), "--models", "food-review,cad-fabricator", "--rpm", "5"],
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[0]
    assert key.startswith("ipk-") and len(key) > 40
    data = yaml.safe_load(path.read_text())
    assert data["keys"][0]["models"] == ["food-review", "cad-fabricator"] and data["keys"][0]["rpm"] == 5
    assert key not in path.read_text()
    listed = runner.invoke(app, ["keys", "list", "-k", str(path)])
    assert "team-a" in listed.stdout and key not in listed.stdout
    dup = runner.invoke(app, ["keys", "add", "team-a", "-k", str(path)])
    assert dup.exit_code == 1
    none = runner.invoke(app, ["keys", "list", "-k", str(tmp_path / "other.yaml")])
    assert none.exit_code == 0 and not none.stdout  # a missing file lists no keys, and says so
    assert "other.yaml does not exist: add one with `inferpool keys add NAME" in none.stderr
