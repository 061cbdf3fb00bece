"""Host memory that a training run keeps between steps instead of handing it back to the system.

Each CPU training step allocates and frees the same few tens of megabytes of activations and gradients.
glibc's malloc gives freed memory at the top of its heap back to the kernel once it exceeds a threshold, and
serves large blocks with fresh mappings, so the next step touches new pages and takes thousands of page
faults: on a 2-core machine that is about a sixth of `jvae train`'s time on 64x64 dSprites. During training jvae
raises both thresholds so the pages stay with the process. Afterwards it leaves malloc where glibc's own
adaptive thresholds settle once large blocks have been freed (explicit settings end that adaptation for
good) and returns what is free. Where the C library is not glibc, or the user has tuned malloc through its
own environment variables, nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
ADAPTED_MMAP = 32 << 20  # the largest mmap threshold glibc adapts to on 64-bit systems
ADAPTED_TRIM = 2 * ADAPTED_MMAP  # and the trim threshold it sets alongside
KEEP_UP_TO = 1 << 30  # free memory kept at the top of the heap during training
OWN_MAPPING_FROM = 256 << 20  # blocks this large (whole datasets) still get a mapping of their own
USER_SETTINGS = ("GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


@contextmanager
def pages_kept() -> Iterator[bool]:
    """Within the block, freed heap memory stays with the process; yields whether malloc was retuned."""
    libc = _glibc()
    tuned = libc is not None and bool(
        libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO) and libc.mallopt(M_MMAP_THRESHOLD, OWN_MAPPING_FROM)
    )
    try:
        yield tuned
    finally:
        if libc is not None and tuned:
            libc.mallopt(M_TRIM_THRESHOLD, ADAPTED_TRIM)
            libc.mallopt(M_MMAP_THRESHOLD, ADAPTED_MMAP)
            libc.malloc_trim(0)
