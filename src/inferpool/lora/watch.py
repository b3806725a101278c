"""Noticing that a config file changed, including Kubernetes ConfigMap symlink swaps.

A ConfigMap volume exposes `configmap.yaml -> ..data/configmap.yaml` with
`..data -> ..2024_01_01_00_00_00.123`; an update writes a new timestamped directory and
atomically renames a new `..data` link over the old one. The link we were given never
changes, so the signature follows every link (realpath) and stats the real file: a swap
changes the resolved path and inode even when the mtime resolution hides the edit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileSignature:
    real_path: str
    inode: int
    mtime_ns: int
    size: int


def signature(path: Path) -> FileSignature | None:
    """The file's identity now, or None if it cannot be read (missing, mid-swap)."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return FileSignature(real_path=real, inode=st.st_ino, mtime_ns=st.st_mtime_ns, size=st.st_size)


@dataclass
class FileWatcher:
    """Polls a path's signature; `changed()` is true once per change."""

    path: Path
    _last: FileSignature | None = None

    def __post_init__(self) -> None:
        self._last = signature(self.path)

    def changed(self) -> bool:
        now = signature(self.path)
        if now is None or now == self._last:
            return False
        self._last = now
        return True
