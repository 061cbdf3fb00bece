"""The old import name, kept for one release: `import jvae_cli.trainer` and the like still work, warning once,
and give the module of the same job under `jvae` (`jvae.training.trainer`). It will be removed in 0.3.

The command line, checkpoints, run folders, presets and studies never named the import package, so none of
them needs it; only Python code written against 0.1 does.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

# The 0.1 modules whose place changed in 0.2; every other `jvae_cli.X` is `jvae.X`.
MOVED = {
    "aggregate": "modeling.aggregate",
    "bench": "training.bench",
    "builder": "modeling.builder",
    "callbacks": "base.callbacks",
    "checkpoint": "modeling.checkpoint",
    "codes": "modeling.codes",
    "collapse": "training.collapse",
    "comparison": "studies.comparison",
    "concurrent": "training.concurrent",
    "critics": "modeling.critics",
    "curves": "runs.curves",
    "devices": "base.devices",
    "distributed": "training.distributed",
    "errors": "base.errors",
    "figures": "use.figures",
    "files": "base.files",
    "host_memory": "base.host_memory",
    "images": "base.images",
    "inference": "use.inference",
    "initialisation": "modeling.initialisation",
    "latents": "modeling.latents",
    "limits": "base.limits",
    "losses": "modeling.losses",
    "media": "base.media",
    "metrics": "use.metrics",
    "model": "modeling.model",
    "monitor": "training.monitor",
    "official": "use.official",
    "presets": "modeling.presets",
    "pretrained": "use.pretrained",
    "recipes": "modeling.recipes",
    "reports": "use.reports",
    "run_writer": "training.run_writer",
    "runfiles": "base.runfiles",
    "runfolder": "runs.runfolder",
    "runplan": "runs.runplan",
    "schedules": "modeling.schedules",
    "sections": "base.sections",
    "selection": "studies.selection",
    "stacked_network": "modeling.stacked_network",
    "stacking": "training.stacking",
    "steps": "training.steps",
    "study": "studies.study",
    "tables": "base.tables",
    "trainer": "training.trainer",
    "training_loop": "training.training_loop",
    "udr": "studies.udr",
}


def new_name(old: str) -> str:
    """The `jvae` module a `jvae_cli` name now lives at."""
    rest = old.removeprefix("jvae_cli").lstrip(".")
    if not rest:
        return "jvae"
    head, _, tail = rest.partition(".")
    moved = MOVED.get(head, head)
    return "jvae." + moved + ("." + tail if tail else "")


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The module was executed when `create_module` imported it under its new name."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("jvae_cli."):
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new_name(fullname)))


warnings.warn(
    "jvae_cli is now jvae (import jvae); the jvae_cli name will be removed in jvae 0.3",
    DeprecationWarning,
    stacklevel=2,
)
sys.meta_path.insert(0, _Finder())
from jvae import *  # noqa: E402,F403 - the old package's own names
from jvae.base.version import __version__  # noqa: E402,F401
