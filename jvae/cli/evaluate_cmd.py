"""`jvae evaluate`: disentanglement metrics and held-out ELBO terms, as report.json, report.md and figures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer
from rich.table import Table

from jvae.cli.common import DEVICE_HELP, checkpoint_file, load, seed_option
from jvae.cli.console import err, fail, out, user_errors
from jvae.runs import runfolder

if TYPE_CHECKING:
    from jvae.data.capabilities import GroundTruth
    from jvae.evaluation import Report


EXAMPLES = """Examples:
jvae evaluate runs/quickstart/ckpt.pt --fast
jvae evaluate official:mnist --data DIR --split test -m cluster_accuracy
jvae evaluate runs/quickstart/ckpt.pt --name-units  # then: --posX +1
"""  # the epilog of --help, and the manual's examples


def evaluate(
    ckpts: list[Path] = typer.Argument(
        ...,
        help="A checkpoint, a run or exported folder, official:NAME or hf:OWNER/NAME; several checkpoints, or a run "
        "folder (its ckpt-STEP.pt history and ckpt.pt), give one row per checkpoint.",
    ),
    data: str = typer.Option(
        None, "--data", help="Dataset location [default: as the checkpoint's preset says]."
    ),
    metrics: list[str] = typer.Option(
        [], "--metrics", "-m", help="Only these metrics (repeatable) [default: all supported]."
    ),
    out_dir: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Report folder [default: report/ beside the checkpoint; report-official-NAME/ for official:NAME].",
    ),
    split: str = typer.Option(
        None,
        "--split",
        help="Score on this part of the dataset: all, train or test (MNIST's 10000 test images, CelebA's "
        "official test partition, held-out chairs) [default: the split the model trained on].",
    ),
    seed: int = seed_option("Seed of every sample the metrics draw."),
    fast: bool = typer.Option(
        False, "--fast", help="A tenth of disentanglement_lib's sample counts (a quick look)."
    ),
    name_units: bool = typer.Option(
        False, "--name-units", help="Store each clearly carried factor's name on its unit."
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Score a model with every metric its dataset supports.

    FactorVAE, beta-VAE, MIG, DCI, SAP, MIC, label accuracy, ELBO terms, per-unit KL.
    """
    from jvae.evaluation import METRICS

    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise fail(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}", 2)
    expanded = [found for given in ckpts for found in _checkpoints(given)]
    if len(expanded) == 1:
        _evaluate_one(expanded[0], data, metrics, out_dir, split, seed, fast, name_units, device)
        return
    if name_units:
        raise fail("--name-units names one checkpoint's units; give one checkpoint", 2)
    _evaluate_history(expanded, data, metrics, out_dir, split, seed, fast, device)


def _checkpoints(given: Path) -> list[Path]:
    """A run folder stands for its checkpoint history, oldest first, then its ckpt.pt."""
    if given.is_dir():
        last = runfolder.checkpoint(given)
        found = runfolder.kept_checkpoints(given) + ([last] if last.is_file() else [])
        if not found:
            raise fail(f"{given}: a folder without ckpt.pt or ckpt-STEP.pt checkpoints", 1)
        return found
    return [given]


def _evaluate_history(
    checkpoints: list[Path],
    data: str | None,
    metrics: list[str],
    out_dir: Path | None,
    split: str | None,
    seed: int,
    fast: bool,
    device: str,
) -> None:
    """A report per checkpoint under one folder, and checkpoints.csv/.json: one row per checkpoint. A
    damaged checkpoint is one error line and left out; the others are still scored (exit code 1)."""
    import json

    from jvae.base.errors import CheckpointError
    from jvae.base.files import write_text
    from jvae.base.tables import write_csv
    from jvae.modeling.checkpoint import read_checkpoint
    from jvae.studies.comparison import flatten_metrics

    target = out_dir if out_dir is not None else checkpoints[-1].parent / "report-history"
    if not target.parent.is_dir():
        raise fail(f"output folder does not exist: {target.parent}", 1)
    readable, damaged = [], []
    for path in checkpoints:
        try:
            if path.is_file():  # a pretrained name or a missing file is _evaluate_one's to report
                read_checkpoint(path)
            readable.append(path)
        except CheckpointError as exc:
            damaged.append(str(exc))
    if not readable:
        raise fail(damaged[0], 1)
    target.mkdir(exist_ok=True)
    rows = []
    for path in readable:
        folder = target / f"{path.parent.name}-{path.stem}"
        report, step = _evaluate_one(path, data, metrics, folder, split, seed, fast, False, device)
        rows.append({"checkpoint": str(path), "step": step, **flatten_metrics(report.metrics)})
    header = list(dict.fromkeys(key for row in rows for key in row))
    with user_errors():
        write_csv(target / "checkpoints.csv", rows, header)
        write_text(target / "checkpoints.json", json.dumps(rows, indent=2) + "\n")
    out.print(f"wrote {target / 'checkpoints.csv'}: {len(rows)} checkpoints", markup=False)
    if damaged:
        raise fail("\n".join(damaged), 1)


def _evaluate_one(
    ckpt: Path,
    data: str | None,
    metrics: list[str],
    out_dir: Path | None,
    split: str | None,
    seed: int,
    fast: bool,
    name_units: bool,
    device: str,
) -> tuple[Report, int]:
    """Score one checkpoint into its report folder; returns the report and the checkpoint's step."""
    from jvae.base.files import check_target
    from jvae.data import open_dataset
    from jvae.evaluation import evaluate as run
    from jvae.evaluation import names_to_store, supported
    from jvae.modeling.checkpoint import set_unit_names
    from jvae.modeling.latents import UnitKL, all_units
    from jvae.modeling.presets import validate_preset
    from jvae.use.figures import write_ranked_traversal
    from jvae.use.reports import REPORT_FILES, kl_bars, mi_heatmap, rows, write_json, write_markdown

    named = str(ckpt)
    ckpt = checkpoint_file(ckpt)
    if not ckpt.is_file():
        raise fail(f"checkpoint not found: {ckpt}", 1)
    if out_dir is not None:
        target = out_dir
    elif named.startswith("hf:"):  # in the hub's cache: its report goes to the current folder
        target = Path("report-" + re.sub(r"[^A-Za-z0-9._-]+", "-", named))
    elif Path(named).is_dir() and ckpt.parent != Path(named):  # an exported folder: the report inside it
        target = runfolder.report_folder(Path(named))
    elif ckpt != Path(named) and ckpt.parent != Path(named):  # a pretrained model lives in the cache: its
        # report goes to the current folder (a run folder's goes inside it, as its checkpoint's does)
        target = Path(f"report-{ckpt.stem}")
    else:
        target = runfolder.report_folder(ckpt.parent)
    if not target.parent.is_dir():
        raise fail(f"output folder does not exist: {target.parent}", 1)
    if target.exists() and not target.is_dir():
        raise fail(f"{target} is a file; --out names a folder for the report", 1)
    with user_errors():
        for name in REPORT_FILES:  # refused before the metrics run, not after
            check_target(target / name)
        loaded, torch_device = load(ckpt, device)
        data_config = loaded.preset.data
        if split is not None:
            data_config = validate_preset(
                {
                    **loaded.preset.model_dump(mode="json"),
                    "data": {**data_config.model_dump(), "split": split},
                },
                "--split",
            ).data
        source = open_dataset(data_config, data)
        available = supported(source, loaded.model)
        missing = [name for name in metrics if name not in available]
        if missing:
            raise fail(
                f"{source.description} cannot give {', '.join(missing)}; it supports {', '.join(available)}",
                2,
            )
        report = run(
            loaded,
            ckpt,
            source,
            torch_device,
            metrics or None,
            seed,
            fast,
            status=lambda t: err.print(t, markup=False),
        )
        target.mkdir(exist_ok=True)
        model = loaded.model
        figures = []
        if report.unit_kl:
            kl_bars(report, target / "kl_per_unit.png")
            figures.append("kl_per_unit.png")
            kl = UnitKL(
                [report.unit_kl[str(i)] for i in range(model.continuous)],
                [report.unit_kl[f"d{i}"] for i in range(len(model.discrete))],
            )
            names = loaded.unit_names
            write_ranked_traversal(
                model,
                source,
                torch_device,
                kl,
                target / "top_units.gif",
                seed,
                names,
                with_prior_mode=False,
                max_continuous=6,
            )
            figures.append("top_units.gif")
        if report.mi_matrix is not None:
            mi_heatmap(
                report,
                list(cast("GroundTruth", source).factor_names),  # an MI matrix means ground truth
                [u.label for u in all_units(model)],
                target / "mi_heatmap.png",
            )
            figures.append("mi_heatmap.png")
        write_json(report, runfolder.report_file(target))
        write_markdown(report, target / "report.md", figures)
        stored = {}
        if name_units:
            stored = names_to_store(report)
            if stored:
                set_unit_names(ckpt, stored)
    table = Table(title=f"evaluation of {ckpt}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows(report):
        table.add_row(name, value)
    out.print(table)
    if name_units:
        out.print(
            "named units: "
            + (", ".join(f"{u}={n}" for u, n in stored.items()) or "none clearly carries a factor"),
            markup=False,
        )
    out.print(
        f"wrote {runfolder.report_file(target)}, {target / 'report.md'} and {len(figures)} figure(s)",
        markup=False,
    )
    return report, loaded.checkpoint.step
