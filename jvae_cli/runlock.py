"""One process per run folder: an OS file lock held for the life of a run.

Two `jvae train` on one folder would interleave their metrics and leave a preset from one run beside the
checkpoint of the other. The lock is `flock` on a file in the folder, so the operating system releases it
when the process ends however it ends (a crash, kill -9); the file keeps the holder's process id, which the
refusal names.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from jvae_cli.errors import RunDirError

LOCK_FILE = ".jvae.lock"


class RunLock:
    """Held from `__enter__` to `__exit__`; a second holder is refused with one line."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise RunDirError(f"cannot lock {self.path.parent}: {self.path} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(
                f"{self.path.parent} is in use by jvae process {holder}; wait for it to finish or pick "
                "another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock; the file stays, so no second inode can appear
            self.fd = None
