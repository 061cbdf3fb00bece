"""Output and errors of the command line: results to stdout, messages and one-line errors to stderr."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from jvae.base.errors import JvaeError

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def inert(text: str) -> str:
    """`text` with every control character (escape sequences, bells, carriage returns) shown as \\xNN, so
    names and paths read from files cannot move the cursor, retitle or clear the user's terminal."""
    return CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class InertConsole(Console):
    """A console that prints text as it is: no markup (a `[/b]` in a unit name or a path is just text) and
    no control characters."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(inert(text), **kwargs)


out = InertConsole(highlight=False, soft_wrap=True, markup=False)
err = InertConsole(stderr=True, highlight=False, soft_wrap=True, markup=False)


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
