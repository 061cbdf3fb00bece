"""The metrics registry: a new metric is one module. The how-to's example module, placed beside the others,
is offered by `evaluate`, computed into the report under its title, shown by `compare` and listed in the
manual, and the intermediate results metrics share are computed once per evaluation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import jvae.evaluation as evaluation
from jvae.evaluation import registry

HOW_TO = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "metric.md"


def _example_module() -> str:
    """The python block of the how-to page: the module it tells a reader to write."""
    return re.search(r"```python\n(.*?)```", HOW_TO.read_text(), re.S).group(1)


@pytest.fixture
def with_example(tmp_path, monkeypatch):
    """The registry as it is found with the how-to's module in the package; restored afterwards."""
    folder = tmp_path / "more_metrics"
    folder.mkdir()
    (folder / "varying_columns.py").write_text(_example_module())
    monkeypatch.setattr(evaluation, "__path__", [*evaluation.__path__, str(folder)])
    shipped = dict(registry.METRICS)
    found = registry._discover()
    registry.METRICS.clear()
    registry.METRICS.update(found)
    yield registry.METRICS["varying_columns"]
    registry.METRICS.clear()
    registry.METRICS.update(shipped)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from jvae.modeling.builder import build_model
    from jvae.modeling.checkpoint import Checkpoint, LoadedCheckpoint
    from jvae.modeling.presets import load_preset

    _, preset = load_preset("quickstart", ["data.image_size=32", 'model.architecture="conv32"'])
    torch.manual_seed(0)
    model = build_model(preset).eval()
    checkpoint_file = tmp_path_factory.mktemp("registry") / "ckpt.pt"  # only hashed into the report
    checkpoint_file.write_bytes(b"weights")
    return LoadedCheckpoint(checkpoint_file, Checkpoint.new("dsprites", preset, {}), preset, model)


def test_every_metric_is_complete_and_placed_once():
    metrics = list(registry.METRICS.values())
    assert len({m.listed for m in metrics}) == len({m.reported for m in metrics}) == len(metrics)
    for metric in metrics:
        assert metric.title and metric.definition and set(metric.needs) <= set(registry.NEEDS_TEXT)


def test_a_new_metric_module_reaches_every_consumer(with_example, loaded):
    from jvae.cli.schema_reference import metrics_page
    from jvae.data.dsprites import GeneratedDSprites
    from jvae.data.sources import TensorImages
    from jvae.studies.comparison import flatten_metrics
    from jvae.use.reports import rows

    source = GeneratedDSprites(1, 32)
    plain = TensorImages(torch.zeros(4, 1, 32, 32, dtype=torch.uint8), "images without factors", 1, 32)
    assert "varying_columns" in evaluation.supported(source)
    assert "varying_columns" not in evaluation.supported(plain)

    report = evaluation.evaluate(
        loaded, loaded.path, source, torch.device("cpu"), ["varying_columns", "mig"], fast=True
    )
    assert list(report.metrics) == ["mig", "varying_columns"]  # their `reported` places
    assert report.settings["metrics"] == ["varying_columns", "mig"]
    assert 0 <= report.metrics["varying_columns"] <= loaded.model.continuous + len(loaded.model.discrete)
    assert ("varying code columns", f"{report.metrics['varying_columns']:.4f}") in rows(report)
    assert flatten_metrics(report.metrics)["varying_columns"] == report.metrics["varying_columns"]
    assert "| `varying_columns` | varying code columns | ground-truth factors |" in metrics_page()


def test_shared_results_are_computed_once(monkeypatch, loaded):
    from jvae.data.dsprites import GeneratedDSprites
    from jvae.evaluation import information as info

    drawn = []
    factor_codes = info.factor_codes

    def counted(*args, **kwargs):
        drawn.append(args[2])
        return factor_codes(*args, **kwargs)

    monkeypatch.setattr(info, "factor_codes", counted)
    source = GeneratedDSprites(1, 32)
    report = evaluation.evaluate(loaded, loaded.path, source, torch.device("cpu"), ["mig", "mic"], fast=True)
    assert drawn == [1000] and set(report.metrics) == {"mig", "mic"}
    assert report.mi_matrix is not None and all("mic" in entry for entry in report.factor_units)
    assert np.isfinite(report.metrics["mig"])
