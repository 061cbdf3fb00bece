"""jvae: JointVAE and related disentangling VAEs, from training to traversals and metric reports.

The Python API is these names (`jvae.api` documents each); importing the package itself stays cheap (no
torch), so `jvae --help` stays fast, and the API is loaded on first use:

    import jvae

    model = jvae.load("official:mnist")
    run = jvae.train("digits", out="runs/d", set={"train.steps": 200})
    jvae.evaluate(run.load(), ["cluster_accuracy"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jvae.base.version import __version__

__all__ = [
    "Code",
    "Model",
    "Run",
    "UnitInfo",
    "__version__",
    "compare",
    "evaluate",
    "load",
    "preset",
    "presets",
    "train",
]

if TYPE_CHECKING:
    from jvae.api import Code, Model, Run, UnitInfo, compare, evaluate, load, preset, presets, train


def __getattr__(name: str) -> Any:
    if name in __all__:
        from jvae import api

        return getattr(api, name)
    raise AttributeError(f"module 'jvae' has no attribute {name!r}")
