"""Fetching a dataset file from its public address, verified against a published checksum.

The file is streamed to a temporary name beside its destination and renamed only once its length and checksum
match, so a dropped connection or a wrong file never leaves something that looks like the dataset.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from jvae_cli.errors import DataError
from jvae_cli.files import commit, temporary_beside

CHUNK = 1 << 20


def download(
    url: str,
    destination: Path,
    checksum: str,
    timeout: float = 60.0,
    algorithm: str = "md5",
    by_hand: str = "fetch it by hand and pass --data",
) -> Path:
    """`destination`, once the file at `url` has arrived whole with the given md5 or sha256 checksum."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_beside(destination)
    digest = hashlib.new(algorithm)
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            expected = response.headers.get("Content-Length")
            while block := response.read(CHUNK):
                out.write(block)
                digest.update(block)
                received += len(block)
        if expected is not None and received != int(expected):
            raise DataError(f"download of {url} stopped after {received} of {expected} bytes; try again")
        if digest.hexdigest() != checksum:
            raise DataError(
                f"download of {url} has {algorithm.upper()} {digest.hexdigest()}, expected {checksum}: not the "
                "published file; nothing was kept"
            )
        commit(partial, destination)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise DataError(f"cannot download {url} ({reason}); {by_hand}") from None
    finally:
        partial.unlink(missing_ok=True)
    return destination
