"""Fetching a file from its public address (a dataset, a released model), verified against a published
checksum: the one download routine, with limits.

The file is streamed to a temporary name beside its destination and renamed only once its length and checksum
match, so a dropped connection or a wrong file never leaves something that looks like the real one. A server
can also send too much, forever, or a byte at a time: the size is bounded (a declared length over the bound is
refused before the body is read), and so are the total time and the time without progress. Each refusal is
one line and leaves nothing behind.

Written here rather than with a download library such as pooch, on purpose: pooch's HTTP downloader gives
a per-read timeout but no bound on the size, the total time or a slow drip of bytes, so jvae would still write
those limits as a downloader of its own and keep only pooch's checksum-and-rename, which is a dozen lines
here; it would also add pooch and requests to jvae's dependencies for two call sites (datasets and the
released models), which share this routine and its loopback-server tests.
"""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.error
import urllib.request
from pathlib import Path

from jvae.base.errors import DataError
from jvae.base.files import commit, temporary_beside

CHUNK = 1 << 16
MAX_BYTES = 256 * 2**20  # no file jvae downloads is larger; callers pass their own, smaller bound
TOTAL_SECONDS = 600.0  # a whole download, however fast the bytes come
STALL_SECONDS = 15.0  # a window that must bring at least STALL_BYTES (and the longest wait for any byte)
STALL_BYTES = 16 * 2**10


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count} bytes"


def download(
    url: str,
    destination: Path,
    checksum: str,
    algorithm: str = "md5",
    by_hand: str = "fetch it by hand and pass --data",
    max_bytes: int | None = None,
) -> Path:
    """`destination`, once the file at `url` has arrived whole, within the limits, with the given md5 or
    sha256 checksum."""
    limit = MAX_BYTES if max_bytes is None else max_bytes
    total_seconds, stall_seconds = TOTAL_SECONDS, STALL_SECONDS
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_beside(destination)
    digest = hashlib.new(algorithm)
    received = 0
    started = window_start = time.monotonic()
    window_bytes = 0
    try:
        with urllib.request.urlopen(url, timeout=stall_seconds) as response, open(partial, "wb") as out:
            declared = str(response.headers.get("Content-Length") or "").strip()
            expected = int(declared) if declared.isdigit() else None
            if expected is not None and expected > limit:
                raise DataError(
                    f"download of {url} refused: the server declares {_size(expected)}, more than the "
                    f"{_size(limit)} this file can be; nothing was kept"
                )
            while block := response.read1(CHUNK):
                received += len(block)
                if received > limit:
                    raise DataError(
                        f"download of {url} refused: more than {_size(limit)}, the most this file can be; "
                        "nothing was kept"
                    )
                out.write(block)
                digest.update(block)
                now = time.monotonic()
                if now - started > total_seconds:
                    raise DataError(
                        f"download of {url} took more than {total_seconds:.0f} s ({_size(received)} so far); "
                        f"nothing was kept; {by_hand}"
                    )
                window_bytes += len(block)
                if now - window_start > stall_seconds:
                    if window_bytes < STALL_BYTES:
                        raise DataError(
                            f"download of {url} stalled: {window_bytes} bytes in {stall_seconds:.0f} s; "
                            f"nothing was kept; {by_hand}"
                        )
                    window_start, window_bytes = now, 0
        if expected is not None and received != expected:
            raise DataError(f"download of {url} stopped after {received} of {expected} bytes; try again")
        if digest.hexdigest() != checksum:
            raise DataError(
                f"download of {url} has {algorithm.upper()} {digest.hexdigest()}, expected {checksum}: not the "
                "published file; nothing was kept"
            )
        commit(partial, destination)
    except TimeoutError:
        raise DataError(
            f"download of {url} stalled: nothing for {stall_seconds:.0f} s; nothing was kept; {by_hand}"
        ) from None
    except (urllib.error.URLError, ConnectionError, OSError, http.client.HTTPException) as exc:
        if isinstance(exc, DataError):
            raise
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise DataError(f"cannot download {url} ({reason}); {by_hand}") from None
    finally:
        partial.unlink(missing_ok=True)
    return destination
