"""Files of inferred codes: one row per image with its posterior, as .npz, .csv or .jsonl.

Columns: `path`; `mean_<i>` and `logvar_<i>` for each continuous unit; `d<j>_p<k>` for each category
probability of discrete variable j and `d<j>` for its argmax. Rows are written as they come (csv, jsonl)
or gathered as compact float arrays (npz), and the file appears under its name only once it is complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import numpy as np

from jvae.base.errors import JvaeError
from jvae.base.files import WriteError, check_target, commit, temporary_beside
from jvae.base.tables import CsvWriter
from jvae.modeling.model import Posterior

FORMATS = (".npz", ".csv", ".jsonl")


def columns(continuous: int, discrete: list[int]) -> list[str]:
    names = ["path"]
    names += [f"mean_{i}" for i in range(continuous)] + [f"logvar_{i}" for i in range(continuous)]
    for j, k in enumerate(discrete):
        names += [f"d{j}_p{c}" for c in range(k)] + [f"d{j}"]
    return names


class CodeWriter:
    """Writes codes batch by batch; `close()` moves the finished file into place."""

    def __init__(self, path: Path, continuous: int, discrete: list[int]) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in FORMATS:
            raise JvaeError(f"{self.path}: unknown codes format; use one of {', '.join(FORMATS)}")
        self.continuous, self.discrete = continuous, discrete
        check_target(self.path)
        try:
            self.tmp = temporary_beside(self.path)
        except OSError as exc:
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        self.rows = 0
        self._arrays: dict[str, list[np.ndarray]] = {"path": [], "mean": [], "logvar": []}
        for j in range(len(discrete)):
            self._arrays[f"d{j}_probs"] = []
            self._arrays[f"d{j}"] = []
        self._handle: IO[str] | None = None
        self._csv: CsvWriter | None = None
        if self.suffix != ".npz":
            self._handle = open(self.tmp, "w", encoding="utf-8", newline="")
            if self.suffix == ".csv":
                self._csv = CsvWriter(self._handle)
                self._csv.row(columns(continuous, discrete))

    def write(self, paths: list[str], posterior: Posterior) -> None:
        mean = posterior.mean.detach().float().cpu().numpy()
        logvar = posterior.logvar.detach().float().cpu().numpy()
        probs = [p.detach().float().cpu().numpy() for p in posterior.probs]
        self.rows += len(paths)
        if self.suffix == ".npz":
            self._arrays["path"].append(np.array(paths, dtype=str))
            self._arrays["mean"].append(mean)
            self._arrays["logvar"].append(logvar)
            for j, p in enumerate(probs):
                self._arrays[f"d{j}_probs"].append(p)
                self._arrays[f"d{j}"].append(p.argmax(1))
            return
        assert self._handle is not None
        for i, path in enumerate(paths):
            if self._csv is not None:
                row: list[object] = [path, *mean[i].tolist(), *logvar[i].tolist()]
                for p in probs:
                    row += [*p[i].tolist(), int(p[i].argmax())]
                self._csv.row(row)
            else:
                record = {"path": path, "mean": mean[i].tolist(), "logvar": logvar[i].tolist()}
                record["discrete"] = [{"probs": p[i].tolist(), "category": int(p[i].argmax())} for p in probs]
                self._handle.write(json.dumps(record) + "\n")

    def close(self) -> None:
        try:
            self._finish()
        except OSError as exc:
            self.abort()
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def _finish(self) -> None:
        if self.suffix == ".npz":
            # Any: np.savez types its named arrays alongside its bool allow_pickle, which no column is named.
            arrays: dict[str, Any] = {
                key: (np.concatenate(parts) if parts else np.zeros((0,)))
                for key, parts in self._arrays.items()
            }
            if not self._arrays["mean"]:
                arrays["mean"] = arrays["logvar"] = np.zeros((0, self.continuous), np.float32)
            with open(self.tmp, "wb") as handle:
                np.savez(handle, **arrays)
        else:
            assert self._handle is not None
            self._handle.close()
        commit(self.tmp, self.path)

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self.tmp.unlink(missing_ok=True)
