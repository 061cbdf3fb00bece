"""MLflow with a local SQLite store (RUN/mlflow/mlflow.db, artifacts in RUN/mlflow/artifacts): the preset as
parameters, every logged term as a metric, the held-out terms, and each evaluation's pictures as artifacts.
A resumed run continues the same MLflow run. Browse with `mlflow ui --backend-store-uri sqlite:///RUN/mlflow/mlflow.db`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from jvae.base.callbacks import Callback, RunInfo
from jvae.base.errors import JvaeError
from jvae.base.files import WriteError, check_target, writable_folder, write_text
from jvae.base.runfiles import read_mlflow_run_id
from jvae.trackers.tensorboard import scalars

FOLDER = "mlflow"
EXPERIMENT = "jvae"


def store_uri(run_dir: Path) -> str:
    return f"sqlite:///{(Path(run_dir) / FOLDER / 'mlflow.db').resolve()}"


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif value is not None:
            flat[name] = str(value)[:500]
    return flat


class MLflowTracker(Callback):
    """Opens its store when the run starts (the run folder is checked empty before that)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / FOLDER
        self.client: Any = None
        self.run_id: str | None = None
        if self.folder.exists() or self.folder.is_symlink():
            self._check()  # refused now, before the run starts, if it cannot be used

    def _check(self) -> None:
        """The folder and the files MLflow writes in it obey the run folder's rules (no links, nothing
        read-only written over), and a resumed run's id is one MLflow made."""
        writable_folder(self.folder)
        check_target(self.folder / "mlflow.db")
        remembered = self.folder / "run_id"
        if remembered.is_file() or remembered.is_symlink():
            check_target(remembered)
            read_mlflow_run_id(remembered)

    def _open(self) -> None:
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # their INFO lines would interleave with the progress display
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._check()
        self.client = MlflowClient(store_uri(self.run_dir))
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        self.experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(
                EXPERIMENT, artifact_location=(self.folder / "artifacts").as_uri()
            )
        )

    def on_start(self, run: RunInfo) -> None:
        try:
            self._start(run)
        except JvaeError:
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow's and SQLite's own errors, as one line
            detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise WriteError(f"{self.folder}: mlflow cannot use its store ({detail})") from None

    def _start(self, run: RunInfo) -> None:
        from mlflow.entities import Param

        self._open()
        remembered = self.folder / "run_id"
        if remembered.is_file():  # a resumed run continues its MLflow run
            self.run_id = read_mlflow_run_id(remembered)
            self.client.update_run(self.run_id, status="RUNNING")
            return
        created = self.client.create_run(self.experiment_id, run_name=run.run_dir.name)
        self.run_id = created.info.run_id
        write_text(remembered, self.run_id)
        params = [Param(k, v) for k, v in _flatten({"preset_name": run.preset_name, **run.preset}).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def _metrics(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        for start in range(0, len(metrics), 500):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 500])

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        self._metrics(step, {f"train/{k}": v for k, v in scalars(record).items()})

    def on_evaluation(self, step: int, record: dict[str, Any], images: dict[str, np.ndarray]) -> None:
        self._metrics(step, {f"eval/{k}": v for k, v in scalars(record).items()})
        if self.run_id is not None:
            for name, image in images.items():
                self.client.log_image(self.run_id, image, artifact_file=f"eval/{name}-{step:06d}.png")

    def on_end(self, run: RunInfo, step: int, interrupted: bool) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status="KILLED" if interrupted else "FINISHED")


def build(run_dir: Path) -> Callback:
    return MLflowTracker(run_dir)
