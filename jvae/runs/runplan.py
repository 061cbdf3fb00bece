"""The run plan: which runs one training call trains, from which presets, into which folders.

`jvae train` and `jvae sweep` state what they want (a preset into a folder, a preset over several seeds, a
sweep's group of runs, a run or stack to continue); the functions here turn it into a `RunPlan` and hold
the rules: which settings a resume may change, how a stack's members are named, which folders may be
written. The CLI parses its options and calls them; `trainer.train_plan` trains the plan.

A sweep hands a group of new runs to one stacked process as a members file (`--members FILE` of
`jvae train`), a JSON list of `{"folder": NAME, "seed": N, "sets": ["section.key=value", ...]}`: each run
is `--preset` with the run's own overrides and seed, trained into OUT/NAME. `write_members` writes one and
`members_from_file` reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jvae.base.errors import PresetError, UsageError
from jvae.base.files import write_text
from jvae.base.limits import STACK_MAX
from jvae.kinds import kind_of
from jvae.modeling.presets import Preset, apply_overrides, load_preset, validate_preset, with_seed
from jvae.runs import runfolder

RESUMABLE = frozenset(  # what a resume may change without changing the weights it trains
    {
        "train.steps",
        "train.epochs",
        "train.log_every",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.eval_every",
        "train.eval_images",
        "train.eval_mig",
        "train.track",
        "train.collapse_check",
        "train.collapse_information",
        "train.collapse_perplexity",
        "train.on_collapse",
        "train.collapse_restarts",
    }
)


@dataclass(frozen=True)
class PlannedRun:
    run_dir: Path
    preset: Preset


@dataclass(frozen=True)
class RunPlan:
    """What one training call trains. A single run is a plan of one run and no stack folder; a stack's
    runs are folders inside `stack_dir`, listed in `stack_file`, trained as one stacked computation (as a
    stack even when it holds one run, so its numbers are the stack's)."""

    preset_name: str
    runs: tuple[PlannedRun, ...]
    resume: bool = False
    stack_dir: Path | None = None
    stack_file: Path | None = None
    within: bool = False  # the stack shares its folder with other things (a study's)

    @property
    def stacked(self) -> bool:
        return self.stack_dir is not None

    @property
    def presets(self) -> list[Preset]:
        return [run.preset for run in self.runs]

    @property
    def run_dirs(self) -> list[Path]:
        return [run.run_dir for run in self.runs]

    def check(self) -> None:
        """Refuse what cannot train before any folder is touched: too many models, models that cannot
        stack, a stack folder that holds something else; then each run's folder (`runfolder.check_run_dir`)."""
        if self.stacked:
            if len(self.runs) > STACK_MAX:  # before any folder: each member holds a lock and a model
                raise PresetError(f"a stack of {len(self.runs)} models; a stack trains at most {STACK_MAX}")
            stackable(self.presets)
            if not self.resume and not self.within:
                assert self.stack_dir is not None
                runfolder.check_run_dir(self.stack_dir, resume=False)
        for run_dir in self.run_dirs:
            runfolder.check_run_dir(run_dir, self.resume)

    def with_tracking(self, track: list[str]) -> RunPlan:
        """The plan with every run also sent to the trackers `track` names."""
        runs = tuple(PlannedRun(run.run_dir, _tracked(run.preset, track)) for run in self.runs)
        return RunPlan(self.preset_name, runs, self.resume, self.stack_dir, self.stack_file, self.within)


def stackable(presets: list[Preset]) -> None:
    """Refuse presets that cannot train as one stack: they may differ in the seed and the loss section's
    values, nothing else."""
    first = presets[0]
    kind = kind_of(first.loss)
    if kind.critic is not None or kind.labelled or first.model.classes:
        raise PresetError(
            f"{kind.name} trains a second network (its critic or classifier) beside each model and cannot "
            "be stacked; train its seeds one at a time (jvae sweep)"
        )

    def shape(preset: Preset) -> dict[str, Any]:
        body = preset.model_dump(mode="json")
        body["train"] = {k: v for k, v in body["train"].items() if k != "seed"}
        body["loss"] = {"kind": body["loss"]["kind"]}
        return body

    for preset in presets[1:]:
        if shape(preset) != shape(first):
            raise PresetError(
                "stacked models may differ only in train.seed and the values of the loss section "
                f"(kind {first.loss.kind}); the data, model and other train settings must match"
            )


def single(preset_name: str, preset: Preset, run_dir: Path, resume: bool = False) -> RunPlan:
    return RunPlan(preset_name, (PlannedRun(Path(run_dir), preset),), resume)


def stack(
    members: list[tuple[str, Preset]],
    preset_name: str,
    stack_dir: Path,
    resume: bool = False,
    within: bool = False,
) -> RunPlan:
    """Models of one preset in one stacked computation, each into its own folder `stack_dir/NAME`.
    `members`: (folder name, preset) pairs that differ only in train.seed and loss values. `within`:
    `stack_dir` holds other things too (a study's folder); only the members' folders must be new, and the
    stack file is named after the first (stack-NAME.json)."""
    if not members:
        raise UsageError("a stack of no models")
    names = [name for name, _ in members]
    if len(set(names)) != len(names):
        raise UsageError("each model of a stack needs a folder of its own")
    for name in names:
        runfolder.check_name(name, "a stack's run folder")
    stack_dir = Path(stack_dir)
    runs = tuple(PlannedRun(stack_dir / name, preset) for name, preset in members)
    stack_file = runfolder.stack_file(stack_dir, names[0] if within else None)
    return RunPlan(preset_name, runs, resume, stack_dir, stack_file, within)


def new(preset: str, overrides: list[str], out_dir: Path | None) -> RunPlan:
    """A new run of `preset` with `overrides`, into `out_dir` (default runs/NAME)."""
    name, resolved = load_preset(preset, overrides)
    return single(name, resolved, out_dir if out_dir is not None else Path("runs") / name)


def seeded(
    preset: str, overrides: list[str], seeds: list[int], out_dir: Path | None, folders: list[str] | None
) -> RunPlan:
    """One model per seed of `preset`, stacked, into OUT/seed-N (or the given folder names, with which OUT
    may also hold other runs)."""
    if len(seeds) > STACK_MAX:
        raise UsageError(f"--seeds: {len(seeds)} seeds; a stack trains at most {STACK_MAX}")
    name, resolved = load_preset(preset, overrides)
    names = [f"seed-{seed}" for seed in seeds]
    if folders is not None:
        names = folders
        if len(names) != len(seeds) or len(set(names)) != len(names):
            raise UsageError(f"--folders: {len(seeds)} different names, one per seed, separated by commas")
        if any(not _plain(name) for name in names):
            raise UsageError("--folders: plain folder names, without slashes")
    members = [(folder, with_seed(resolved, seed)) for folder, seed in zip(names, seeds)]
    stack_dir = out_dir if out_dir is not None else Path("runs") / name
    return stack(members, name, stack_dir, within=folders is not None)


def write_members(path: Path, runs: list[tuple[str, int, list[str]]]) -> None:
    """A members file (see the module's docstring) of (folder, seed, overrides) runs."""
    listed = [{"folder": folder, "seed": seed, "sets": sets} for folder, seed, sets in runs]
    write_text(path, json.dumps(listed, indent=1) + "\n")


def members_from_file(preset: str, overrides: list[str], listing: Path, out_dir: Path) -> RunPlan:
    """The stack a members file lists, each run `preset` with `overrides`, its own and its seed, trained
    into `out_dir`/folder beside whatever else `out_dir` holds."""
    from jvae.base.runfiles import RunFileError, read_json

    shape = "not a list of {folder, seed, sets}"
    try:
        entries = read_json(listing)
        runs = [(str(e["folder"]), int(e["seed"]), [str(text) for text in e["sets"]]) for e in entries]
    except RunFileError as error:
        detail = str(error).removeprefix(f"{listing}: ")
        raise UsageError(f"--members {listing}: {shape} ({detail})") from None
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"--members {listing}: {shape} ({error})") from None
    if len(runs) > STACK_MAX:
        raise UsageError(f"--members {listing}: {len(runs)} runs; a stack trains at most {STACK_MAX}")
    names = [folder for folder, _, _ in runs]
    if not runs or len(set(names)) != len(names):
        raise UsageError(f"--members {listing}: one or more runs, each with its own folder")
    if any(not _plain(name) for name in names):
        raise UsageError(f"--members {listing}: plain folder names, without slashes")
    members = [
        (folder, load_preset(preset, [*overrides, *sets, f"train.seed={seed}"])[1])
        for folder, seed, sets in runs
    ]
    name = load_preset(preset, overrides)[0]
    return stack(members, name, out_dir, within=True)


def resumed(folder: Path, overrides: list[str]) -> RunPlan:
    """The run or stack in `folder`, continued from its checkpoints with its own presets; `overrides` may
    change only what keeps the run exact (RESUMABLE)."""
    from jvae.modeling.checkpoint import read_checkpoint

    bad = [o for o in overrides if o.partition("=")[0].strip() not in RESUMABLE]
    if bad:
        allowed = ", ".join(sorted(RESUMABLE))
        raise UsageError(
            f"--resume accepts only overrides that keep the run exact ({allowed}), not {bad[0]!r}"
        )
    folder = Path(folder)
    listing = runfolder.resumable_stack(folder)
    if listing is not None:
        folder = listing.parent
        members = []
        name = ""
        for member in runfolder.read_stack(folder, listing):
            checkpoint = read_checkpoint(runfolder.checkpoint(folder / member))
            name = checkpoint.preset_name
            preset = validate_preset(
                apply_overrides(checkpoint.preset, overrides), f"{folder / member} preset"
            )
            members.append((member, preset))
        return stack(members, name, folder, resume=True, within=listing.name != runfolder.STACK_FILE)
    checkpoint = read_checkpoint(runfolder.checkpoint(folder))
    preset = validate_preset(apply_overrides(checkpoint.preset, overrides), f"{folder} preset")
    return single(checkpoint.preset_name, preset, folder, resume=True)


def _plain(name: str) -> bool:
    return bool(name) and Path(name).name == name and name not in (".", "..")


def _tracked(preset: Preset, track: list[str]) -> Preset:
    tracked = list(preset.train.track)
    tracked += [name for name in track if name not in tracked]
    train_section = {**preset.train.model_dump(mode="json"), "track": tracked}
    return validate_preset({**preset.model_dump(mode="json"), "train": train_section}, "--track")
