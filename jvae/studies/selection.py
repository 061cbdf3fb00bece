"""Choosing the run a user gets from several runs of one setting, without labels: every run is read on the same
images by every criterion of `jvae.studies.criteria` (UDR, the agreement of the discrete codes, held-out ELBO
and reconstruction, what the discrete code carries), the chosen criterion ranks them, and the best is named
(and linked).

A group is the runs of one setting that differ only in their seed: a stack's members, or a study's runs with
the same preset and overrides. Each run's scores go into its own folder's `udr.json` (so `compare` shows them
like any other score, without encoding the images again), and the groups with their selected runs into the
stack's or study's `udr.json`; a stack also links `selected` to the chosen member's folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from jvae.base.errors import JvaeError
from jvae.base.files import write_text
from jvae.base.runfiles import RunFileError, RunSelection, read_model, read_toml
from jvae.runs.runfolder import CHECKPOINT, PRESET_FILE, SELECTED_LINK, UDR_FILE
from jvae.studies import criteria, udr
from jvae.studies.criteria import CRITERIA

if TYPE_CHECKING:
    from jvae.modeling.model import JointVAE
    from jvae.modeling.presets import DataConfig


@dataclass
class Selection:
    """Every criterion's figure for each run of one group, and the run the chosen criterion selects."""

    runs: list[str]  # folder names, in the order of the scores
    criterion: str  # what selects (`jvae.studies.criteria`)
    scores: dict[str, list[float]]  # each criterion's figure per run
    udr_lasso: list[float]  # UDR_L (disentanglement_lib's default; 1 - alpha = 0.9 for equal runs)
    pairwise: list[list[float | None]]  # UDR_S of each ordered pair (row: first run); None on the diagonal
    images: int
    seed: int
    step: int | None = None  # the step the runs were read at, where that is before their end

    @property
    def udr(self) -> list[float]:
        return self.scores["udr"]

    @property
    def ranking(self) -> list[int]:
        """The runs' indices, best first by the criterion."""
        criterion = CRITERIA[self.criterion]
        values = self.scores[self.criterion]
        return sorted(range(len(values)), key=lambda k: -values[k] if criterion.higher else values[k])

    @property
    def selected(self) -> str:
        return self.runs[self.ranking[0]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": f"{self.criterion}: {CRITERIA[self.criterion].description}",
            "criterion": self.criterion,
            "step": self.step,
            "images": self.images,
            "seed": self.seed,
            "selected": self.selected,
            "runs": {
                name: {**{c: values[k] for c, values in self.scores.items()}, "udr_lasso": self.udr_lasso[k]}
                for k, name in enumerate(self.runs)
            },
            "pairwise": self.pairwise,
        }


@torch.no_grad()
def representation_of(
    model: JointVAE, images: torch.Tensor, device: torch.device, batch: int = 250
) -> udr.Representation:
    """The code UDR compares: posterior means, each discrete variable's argmax, and their mean KLs."""
    means, kl_cont, categories, kl_disc = [], [], [], []
    for start in range(0, len(images), batch):
        posterior = model.encode(images[start : start + batch].to(device))
        means.append(posterior.mean.float().cpu())
        kl_cont.append(posterior.kl_continuous().sum(dim=0).cpu())
        categories.append(torch.stack(posterior.categories, dim=1).cpu())
        kl_disc.append(
            torch.stack(posterior.kl_discrete(), dim=1).sum(dim=0).cpu()
            if posterior.logits
            else torch.zeros(0)
        )
    count = len(images)
    codes = torch.cat(categories).numpy()
    return udr.Representation(
        means=torch.cat(means).numpy(),
        kl_continuous=(torch.stack(kl_cont).sum(dim=0) / count).double().numpy(),
        categories=[codes[:, v] for v in range(codes.shape[1])],
        kl_discrete=(torch.stack(kl_disc).sum(dim=0) / count).double().numpy(),
    )


def shared_images(data: DataConfig, data_path: str | None, count: int, seed: int) -> torch.Tensor:
    """`count` images drawn with `seed` from the dataset the runs trained on."""
    from jvae.data import open_dataset

    source = open_dataset(data, data_path)
    picks = np.random.RandomState(seed).choice(len(source), size=min(count, len(source)), replace=False)
    return source.images(torch.from_numpy(picks), torch.device("cpu"))


def select(
    run_dirs: list[Path],
    data_path: str | None = None,
    device: torch.device | None = None,
    images: int = udr.IMAGES,
    seed: int = 0,
    criterion: str = "udr",
) -> Selection:
    """Every criterion on each of `run_dirs` (two or more runs of one setting), read from their checkpoints,
    which must stand at one step."""
    paths = [d / CHECKPOINT for d in run_dirs]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise JvaeError(f"{missing[0]}: no checkpoint to score (train it first)")
    group = criteria.load_group(paths, data_path, device or torch.device("cpu"), images, seed)
    steps = {item.checkpoint.step for item in group.loaded}
    if len(steps) > 1:
        at = ", ".join(f"{d.name} at {item.checkpoint.step}" for d, item in zip(run_dirs, group.loaded))
        raise JvaeError(f"selection compares runs at one step; these stopped at different steps ({at})")
    check = criteria.check_criterion(criterion)
    if check.discrete and not group.loaded[0].model.discrete:
        raise JvaeError(f"--select {criterion} reads discrete variables; these models have none")
    scores = criteria.score(group)
    return Selection(
        runs=[d.name for d in run_dirs],
        criterion=criterion,
        scores=scores,
        udr_lasso=udr.run_scores(udr.pairwise_scores(group.representations, "lasso")),
        pairwise=[[None if np.isnan(v) else float(v) for v in row] for row in group.udr_pairs],
        images=len(group.shared),
        seed=seed,
    )


def write_selections(folder: Path, groups: list[tuple[list[Path], Selection]], link: bool = False) -> Path:
    """Each run's `udr.json` (its scores, its group, whether it was selected) and `folder/udr.json` with
    every group; with `link` (a stack: one group), `folder/selected` points at the selected run's folder."""
    for run_dirs, selection in groups:
        for run_dir, value, lasso in zip(run_dirs, selection.udr, selection.udr_lasso):
            record = {
                "udr": value,
                "udr_lasso": lasso,
                "group": selection.runs,
                "selected": run_dir.name == selection.selected,
                "criterion": selection.criterion,
                "scores": {
                    c: values[selection.runs.index(run_dir.name)] for c, values in selection.scores.items()
                },
            }
            write_text(run_dir / UDR_FILE, json.dumps(record, indent=2) + "\n")
    path = folder / UDR_FILE
    write_text(path, json.dumps({"groups": [s.to_dict() for _, s in groups]}, indent=2) + "\n")
    if link and len(groups) == 1:
        target = folder / SELECTED_LINK
        if target.is_symlink():
            target.unlink()
        if not target.exists():
            os.symlink(groups[0][1].selected, target, target_is_directory=True)
    return path


def read_run_scores(run_dir: Path) -> dict[str, Any]:
    """A run's UDR record (udr, udr_lasso, selected) from its `udr.json`; {} when it has none, and a
    `RunFileError` naming the file when it is damaged."""
    path = run_dir / UDR_FILE
    if not path.is_file():
        return {}
    record = read_model(path, RunSelection)
    return {"udr": record.udr, "udr_lasso": record.udr_lasso, "selected": record.selected}


def setting_groups(run_dirs: list[Path]) -> list[list[Path]]:
    """The runs that differ only in their seed, grouped by the preset each saved (train.seed left out);
    runs without a checkpoint are left out, and a damaged preset file is a `RunFileError` naming it."""
    groups: dict[str, list[Path]] = {}
    for run_dir in run_dirs:
        if not (run_dir / CHECKPOINT).is_file():
            continue
        preset = read_toml(run_dir / PRESET_FILE)
        if not isinstance(preset.get("train"), dict):
            raise RunFileError(f"{run_dir / PRESET_FILE}: no [train] section; not a preset jvae wrote")
        preset["train"].pop("seed", None)
        groups.setdefault(json.dumps(preset, sort_keys=True, default=str), []).append(run_dir)
    return list(groups.values())


def select_groups(
    folder: Path,
    run_dirs: list[Path],
    data_path: str | None = None,
    device: torch.device | None = None,
    link: bool = False,
    criterion: str = "udr",
) -> list[tuple[list[Path], Selection]]:
    """Selection in every group of two or more runs among `run_dirs`, written (see `write_selections`)."""
    groups = [
        (group, select(group, data_path, device, criterion=criterion))
        for group in setting_groups(run_dirs)
        if len(group) > 1
    ]
    if not groups:
        raise JvaeError(
            f"{folder}: selection needs two or more finished runs of one setting (differing only in their seed)"
        )
    write_selections(folder, groups, link)
    return groups


def select_in_study(
    folder: Path, data_path: str | None = None, device: torch.device | None = None, criterion: str = "udr"
) -> list[tuple[list[Path], Selection]]:
    """Selection among the finished runs of the study in `folder`, per setting."""
    from jvae.studies.study import load_study, run_state

    study, runs = load_study(folder)
    finished = [folder / spec.name for spec in runs if run_state(folder / spec.name, study) == "finished"]
    return select_groups(folder, finished, data_path, device, criterion=criterion)


def select_in_folder(
    folder: Path, data_path: str | None = None, device: torch.device | None = None, criterion: str = "udr"
) -> list[tuple[list[Path], Selection]]:
    """Selection in a study folder (per setting) or a stack's folder (its models, `selected` linked)."""
    from jvae.runs.runfolder import is_stack, read_stack
    from jvae.studies.study import MANIFEST

    if (folder / MANIFEST).is_file():
        return select_in_study(folder, data_path, device, criterion)
    if is_stack(folder):
        names = read_stack(folder)
        return select_groups(folder, [folder / name for name in names], data_path, device, True, criterion)
    raise JvaeError(f"{folder}: --select chooses within a study folder ({MANIFEST}) or a stack's folder")
