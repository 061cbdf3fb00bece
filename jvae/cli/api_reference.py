"""The Python API's reference page, generated from `jvae.api`'s signatures and docstrings, so the page
cannot say what the code does not do."""

from __future__ import annotations

import inspect
from typing import Any

from jvae.cli.schema_reference import GENERATED

INTRO = (
    "`import jvae` gives these names; each is defined in `jvae/api.py`, and the commands resolve their "
    "checkpoint arguments through the same `resolve_checkpoint`. A [tutorial](../tutorials/python.md) "
    "walks through them; [Python API internals](python-api.md) covers the engine pieces beneath "
    "(callbacks, metrics on any representation, run folders)."
)


def _doc(thing: Any) -> str:
    return inspect.getdoc(thing) or ""


def _signature(name: str, thing: Any) -> str:
    return f"{name}{inspect.signature(thing)}".replace("'", "")


def _section(name: str, thing: Any, level: str = "##") -> list[str]:
    lines = [f"{level} `{name}`", "", "```python", _signature(name, thing), "```", "", _doc(thing), ""]
    if inspect.isclass(thing):
        for member, value in vars(thing).items():
            if member.startswith("_"):
                continue
            if isinstance(value, property):
                lines += [f"- `{name}.{member}` (property): {_doc(value) or 'see above'}"]
            elif inspect.isfunction(value):
                lines += ["", f"### `{name}.{member}`", "", "```python"]
                lines += [_signature(member, value), "```", "", _doc(value) or "", ""]
        lines.append("")
    return lines


def api_page() -> str:
    import jvae
    from jvae import api

    lines = [GENERATED, "# Python API", "", INTRO, "", _doc(api).split("\n\n")[0], ""]
    for name in jvae.__all__:
        if name.startswith("__"):
            continue
        lines += _section(name, getattr(api, name))
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"
