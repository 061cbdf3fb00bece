"""Output and errors of the command line: results to stdout, messages and one-line errors to stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from jvae_cli.errors import JvaeError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    for line in message.splitlines() or [""]:
        err.print(f"error: {line}", markup=False, soft_wrap=True, style="red")
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the engine's user-facing errors into `error: ...` lines and their exit code, never a traceback."""
    try:
        yield
    except JvaeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except (
        OSError
    ) as exc:  # a file jvae could not write or read: permissions, a full disk, a folder in the way
        where = f"{exc.filename}: " if exc.filename else ""
        raise fail(f"{where}{exc.strerror or exc}", 1) from None
