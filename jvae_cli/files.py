"""Writing a file so that readers only ever see the old version or the whole new one.

Every file jvae writes (checkpoints, logs, reports, codes, images, GIFs) is written to a fresh temporary file
beside its target, flushed to disk and renamed over the target in one step: a crash, a full disk or an
interrupt leaves the previous file intact. The temporary name is created exclusively with an unpredictable
part (`tempfile.mkstemp`), so a name planted in advance cannot redirect the write.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _creation_mode() -> int:
    """The mode open() gives a new file under this process's umask (mkstemp's own 0600 would hide runs and
    reports from the other users a plain write lets read them)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_beside(path: Path) -> Path:
    """A new, empty, exclusively created file in `path`'s folder, with the mode a plain write would give; it
    keeps the suffix, which some writers read to pick a format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    try:
        os.fchmod(handle, _creation_mode())
    finally:
        os.close(handle)
    return Path(name)


def commit(temporary: Path, path: Path) -> None:
    """Flush `temporary` to disk and rename it over `path`."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_via(path: Path, write: Callable[[Path], object]) -> None:
    """Let `write` fill a temporary file, then put it in place of `path`; nothing is left behind on failure."""
    path = Path(path)
    temporary = temporary_beside(path)
    try:
        write(temporary)
        commit(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    write_via(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
