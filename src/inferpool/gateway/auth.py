"""API keys: who may call the gateway, for which models, with which limits.

Keys live in a YAML file as SHA-256 hashes only; the plain key is shown once by
`inferpool keys add` and never stored. A leaked keys file therefore gives no usable key
(the keys are 256 random bits, so the hash cannot be reversed by guessing).
The file is re-read when it changes, so added or removed keys apply without a restart.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inferpool.errors import InferenceError

KEY_PREFIX = "ipk-"
ANY_MODEL = "*"


class KeysFileError(ValueError):
    """The keys file cannot be read or has a malformed entry (names the file and the entry)."""


@dataclass(frozen=True)
class ApiKey:
    """One key's grants. `objective` names an InferenceObjective that overrides the request's priority."""

    name: str
    sha256: str
    models: tuple[str, ...] = (ANY_MODEL,)
    rpm: int | None = None  # requests per minute; None: unlimited
    tpm: int | None = None  # prompt + completion tokens per minute; None: unlimited
    objective: str | None = None
    created: str | None = None

    def allows(self, model: str) -> bool:
        return ANY_MODEL in self.models or model in self.models

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "sha256": self.sha256, "models": list(self.models)}
        if self.rpm is not None:
            out["rpm"] = self.rpm
        if self.tpm is not None:
            out["tpm"] = self.tpm
        if self.objective is not None:
            out["objective"] = self.objective
        if self.created is not None:
            out["created"] = self.created
        return out


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh key: a recognisable prefix and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _positive(entry: Mapping[str, Any], name: str, where: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise KeysFileError(f"{where}: {name} must be a positive integer, got {value!r}")
    return value


def parse_keys(data: Any, file: str = "<keys>") -> list[ApiKey]:
    """Keys from the file's YAML value: `{keys: [{name, sha256, models, rpm, tpm, objective}]}`."""
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("keys", []), list):
        raise KeysFileError(f"{file}: expected a mapping with a 'keys' list")
    out: list[ApiKey] = []
    names: set[str] = set()
    for i, entry in enumerate(data.get("keys") or []):
        where = f"{file}: keys[{i}]"
        if not isinstance(entry, dict):
            raise KeysFileError(f"{where}: expected a mapping")
        name, digest = entry.get("name"), entry.get("sha256")
        if not isinstance(name, str) or not name:
            raise KeysFileError(f"{where}: name is required")
        if name in names:
            raise KeysFileError(f"{where}: duplicate key name {name!r}")
        names.add(name)
        if (
            not isinstance(digest, str)
            or len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
        ):
            raise KeysFileError(f"{where} ({name}): sha256 must be 64 lower-case hex digits")
        models = entry.get("models", [ANY_MODEL])
        if isinstance(models, str):
            models = [models]
        if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
            raise KeysFileError(f"{where} ({name}): models must be a non-empty list of names or '*'")
        objective = entry.get("objective")
        if objective is not None and not isinstance(objective, str):
            raise KeysFileError(f"{where} ({name}): objective must be an InferenceObjective name")
        out.append(
            ApiKey(
                name=name,
                sha256=digest,
                models=tuple(models),
                rpm=_positive(entry, "rpm", where),
                tpm=_positive(entry, "tpm", where),
                objective=objective,
                created=str(entry["created"]) if entry.get("created") is not None else None,
            )
        )
    return out


def read_keys_file(path: Path) -> list[ApiKey]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeysFileError(f"{path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KeysFileError(f"{path}: not valid YAML: {exc}") from exc
    return parse_keys(data, str(path))


def add_key(
    path: Path,
    name: str,
    models: Sequence[str] = (ANY_MODEL,),
    rpm: int | None = None,
    tpm: int | None = None,
    objective: str | None = None,
) -> str:
    """Append a key to the file (created 0600 if missing) and return the plain key, which is not stored."""
    keys = read_keys_file(path)
    if any(k.name == name for k in keys):
        raise KeysFileError(f"{path}: a key named {name!r} already exists")
    plain = new_key()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entry = ApiKey(name, hash_key(plain), tuple(models) or (ANY_MODEL,), rpm, tpm, objective, created)
    parse_keys({"keys": [entry.to_yaml()]}, str(path))  # same validation as on load
    keys.append(entry)
    text = yaml.safe_dump({"keys": [k.to_yaml() for k in keys]}, sort_keys=False)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise KeysFileError(f"{path}: cannot write: {exc.strerror}") from exc
    return plain


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header (`headers` lower-cased), else None."""
    value = headers.get("authorization", "")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(message: str) -> InferenceError:
    return InferenceError(
        401,
        message,
        err_type="invalid_request_error",
        headers={"WWW-Authenticate": 'Bearer realm="inferpool"'},
    )


@dataclass
class KeyStore:
    """The keys file, re-read at most every `recheck_s` when its modification time changed."""

    path: Path
    recheck_s: float = 1.0
    _by_hash: dict[str, ApiKey] = field(default_factory=dict)
    _mtime: float | None = None
    _checked: float = float("-inf")

    def __post_init__(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Read the file now; KeysFileError if it is malformed (the old keys stay in force)."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        keys = read_keys_file(self.path)
        self._by_hash = {k.sha256: k for k in keys}
        self._mtime = mtime
        self._checked = time.monotonic()

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return
        self._checked = now
        try:
            mtime: float | None = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            try:
                self.reload()
            except KeysFileError:
                self._checked = now  # keep serving with the last good keys; try again later

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, token: str) -> ApiKey | None:
        self._refresh()
        return self._by_hash.get(hash_key(token))

    def authenticate(self, headers: Mapping[str, str]) -> ApiKey:
        """The caller's key, or a 401 InferenceError (missing, malformed or unknown key)."""
        token = bearer_token(headers)
        if token is None:
            raise unauthorized(
                "You didn't provide an API key. Provide it in the Authorization header "
                "(Authorization: Bearer YOUR_KEY)."
            )
        key = self.lookup(token)
        if key is None:
            raise unauthorized("Incorrect API key provided.")
        return key


def authorize_model(key: ApiKey, model: str) -> None:
    """403 when the key may not use `model` (the name the client sent)."""
    if model and not key.allows(model):
        raise InferenceError(
            403,
            f"The API key {key.name!r} is not allowed to use model {model!r}.",
            param="model",
            err_type="permission_denied",
        )
