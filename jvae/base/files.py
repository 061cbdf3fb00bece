"""Writing a file so that readers only ever see the old version or the whole new one, and only where the user
said.

Every file jvae writes (checkpoints, logs, reports, codes, images, GIFs, figures) is written to a fresh
temporary file beside its target, flushed to disk and renamed over the target in one step: a crash, a full
disk or an interrupt leaves the previous file intact. The temporary name is created exclusively with an
unpredictable part (`tempfile.mkstemp`: O_CREAT | O_EXCL, which never follows a link), so a name planted in
advance cannot redirect the write; a target that is itself a symbolic link is refused rather than followed,
and a file the user made read-only is left alone.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from jvae.base.errors import JvaeError

TEMPORARY_MARK = ".tmp"  # every temporary name is .<stem>.<random><mark><suffix>


class WriteError(JvaeError):
    """A file jvae could not or would not write: a link in its place, no permission, a full disk."""


def _creation_mode() -> int:
    """The mode open() gives a new file under this process's umask (mkstemp's own 0600 would hide runs and
    reports from the other users a plain write lets read them)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_target(path: Path) -> int | None:
    """Refuse a target that is a link or read-only; returns the existing file's mode bits, or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise WriteError(
            f"refusing to write {path}: it is a symbolic link, and jvae never writes through one"
        )
    if not stat.S_ISREG(info.st_mode):
        raise WriteError(f"cannot write {path}: something other than a file is in the way")
    if not info.st_mode & stat.S_IWUSR:
        raise WriteError(f"{path} is read-only; jvae leaves it as it is (make it writable to replace it)")
    return stat.S_IMODE(info.st_mode)


def writable_folder(path: Path) -> Path:
    """`path` as a folder jvae may write into, created if missing: never a link (whose target could be
    anywhere), never something else in the way, never one the user made read-only."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise WriteError(f"{path}: cannot create ({_reason(exc, path.parent)})") from None
        return path
    if stat.S_ISLNK(info.st_mode):
        raise WriteError(
            f"refusing to write into {path}: it is a symbolic link, and jvae never writes through one"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise WriteError(f"cannot write into {path}: something other than a folder is in the way")
    if not info.st_mode & stat.S_IWUSR or not os.access(path, os.W_OK | os.X_OK):
        raise WriteError(f"{path} is read-only; jvae leaves it as it is (make it writable to write there)")
    return path


def temporary_beside(path: Path) -> Path:
    """A new, empty, exclusively created file in `path`'s folder, with the mode a plain write would give; it
    keeps the suffix, which some writers read to pick a format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f"{TEMPORARY_MARK}{path.suffix}"
    )
    try:
        os.fchmod(handle, _creation_mode())
    finally:
        os.close(handle)
    return Path(name)


def commit(temporary: Path, path: Path) -> None:
    """Flush `temporary` to disk and rename it over `path` (keeping the mode of the file it replaces)."""
    mode = check_target(path)
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
        if mode is not None:
            os.fchmod(handle.fileno(), mode)
    os.replace(temporary, path)


def _reason(exc: BaseException, folder: Path) -> str:
    """Why a write failed, in a few words; PyTorch reports a full disk as a RuntimeError of its own."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (
            "no space left on device" if exc.errno != errno.EFBIG else "file too large for this file system"
        )
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    try:
        if os.statvfs(folder).f_bavail == 0:
            return "no space left on device"
    except OSError:
        pass
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def write_via(path: Path, write: Callable[[Path], object]) -> None:
    """Let `write` fill a temporary file, then put it in place of `path`; nothing is left behind on failure
    and a failure is one WriteError line."""
    path = Path(path)
    check_target(path)
    try:
        temporary = temporary_beside(path)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write ({_reason(exc, path.parent)})") from None
    try:
        write(temporary)
        commit(temporary, path)
    except (OSError, RuntimeError) as exc:
        raise WriteError(f"{path}: cannot write ({_reason(exc, path.parent)})") from None
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    write_via(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


@contextmanager
def appending(path: Path) -> Iterator[IO[str]]:
    """A text log opened for appending that refuses to follow a link planted at its name."""
    check_target(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, _creation_mode())
    except OSError as exc:
        raise WriteError(f"{path}: cannot write ({_reason(exc, path.parent)})") from None
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        yield handle


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files an interrupted write left in `folder` (only call this while no other jvae
    process can be writing there, as under the run lock); returns what was removed."""
    removed = []
    for entry in folder.glob(".*"):
        if TEMPORARY_MARK in entry.name and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
