"""Where each dataset is looked for, and what to tell a user when it is not there.

Order: `--data PATH`, then the preset's `data.path`, then `$JVAE_DATA/<standard folder>`. A miss names the files
jvae expected, the layout, and how to get them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jvae.base.errors import DataNotFoundError


@dataclass(frozen=True)
class Layout:
    """Where a dataset's files go and how to get them; each dataset module declares its own."""

    folder: str  # standard sub-folder of $JVAE_DATA
    expected: str  # what must be inside it
    how_to_get: str


def data_root(layout: Layout, override: str | None, preset_path: str | None, download: bool = False) -> Path:
    """The path the user pointed at for the dataset, or the standard folder under $JVAE_DATA; a dataset to be
    downloaded with neither goes to the user's cache folder."""
    if override:
        return Path(override).expanduser()
    if preset_path:
        return Path(preset_path).expanduser()
    env = os.environ.get("JVAE_DATA")
    if env:
        return Path(env).expanduser() / layout.folder
    if download:
        from jvae.data.cache import cache_root

        return cache_root() / "data" / layout.folder
    raise not_found(layout, None)


def not_found(layout: Layout, looked_at: Path | None) -> DataNotFoundError:
    where = f"{looked_at}" if looked_at is not None else f"$JVAE_DATA/{layout.folder}"
    return DataNotFoundError(
        f"data not found: put {layout.expected} at {where}, or pass --data PATH ({layout.how_to_get})"
    )
