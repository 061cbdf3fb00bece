"""`jvae train`: train a preset into a run directory, or resume one."""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from jvae.cli.console import err, fail, out, user_errors
from jvae.cli.selecting import (
    check_selection,
    print_selections,
    resumed_selection,
    selection_step,
)

if TYPE_CHECKING:
    from jvae.runs.runplan import RunPlan

EXIT_BY_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopOnSignal:
    """First SIGINT/SIGTERM asks the trainer to stop after its current step and checkpoint; a second one quits."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        for sig in EXIT_BY_SIGNAL:
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        err.print("stopping after this step and writing a checkpoint (press Ctrl-C again to quit now)")

    def __call__(self) -> bool:
        return self.received is not None

    def exit_code(self) -> int:
        """The shell's code for a command stopped by the signal received."""
        return EXIT_BY_SIGNAL.get(signal.Signals(self.received or signal.SIGINT), 130)


EXAMPLES = """Examples:
jvae train --preset quickstart                # into runs/quickstart/
jvae train --preset mnist --data ~/data/mnist --set train.epochs=10
jvae train --resume runs/quickstart --set train.steps=8000
jvae train --preset digits --seeds 0-7 --out runs/digits-seeds
"""  # the epilog of --help, and the manual's examples


def train(
    preset: str = typer.Option(None, "--preset", "-p", help="Preset name or path to a preset .toml file."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a preset field: section.key=value."
    ),
    data: str = typer.Option(
        None, "--data", help="Dataset location (file or folder); else data.path, else $JVAE_DATA."
    ),
    out_dir: Path = typer.Option(None, "--out", "-o", help="Run directory [default: runs/<preset>]."),
    device: str = typer.Option("auto", "--device", help="auto (GPU when present), cpu, cuda or cuda:N."),
    resume: Path = typer.Option(
        None, "--resume", help="Continue the run in this directory where it stopped."
    ),
    nproc: int = typer.Option(
        1, "--nproc", min=1, help="Train with N processes (GPUs, or CPU processes) via torchrun."
    ),
    track: list[str] = typer.Option(
        [], "--track", help="Also send the run to a tracker: tensorboard or mlflow (repeatable)."
    ),
    seeds: str = typer.Option(
        None,
        "--seeds",
        help="Train one model per seed (a range 0-7 or a list 0,3,7) as one stacked computation, each into "
        "its own folder OUT/seed-N.",
    ),
    folders: str = typer.Option(
        None,
        "--folders",
        help="With --seeds: the run folders' names, one per seed (default seed-N); --out may then be a "
        "folder holding other runs.",
    ),
    members_file: Path = typer.Option(
        None,
        "--members",
        help="Train the runs a JSON file lists as one stack, each into OUT/FOLDER beside what OUT holds: "
        '[{"folder": NAME, "seed": N, "sets": ["section.key=value", ...]}, ...], each --preset with its '
        "own --set values and seed (what jvae sweep --stack writes).",
    ),
    profile: bool = typer.Option(
        False,
        "--profile",
        help="Print where a step's time goes (data, forward, backward, optimizer, logging).",
    ),
    on_collapse: str = typer.Option(
        None,
        "--on-collapse",
        help="warn or restart: what a run does when the collapse check finds a discrete code that carries "
        "nothing (train.on_collapse; restart trains it again from the next unused seed, keeping the "
        "collapsed attempt in collapsed/seed-N/).",
    ),
    select: str | None = typer.Option(
        None,
        "--select",
        metavar="CRITERION",
        help="With --seeds: the criterion that chooses among the models without labels (udr, agreement, "
        "elbo, recon, information, perplexity, or best: the one measured to predict quality best); "
        "OUT/selected links the chosen one.",
    ),
    select_at: str = typer.Option(
        None,
        "--select-at",
        help="With --select: rank the seeds at this step (a fraction of the schedule such as 0.25, or a "
        "step count) and train only the best --keep on; end: train every seed to the end first.",
    ),
    keep: int = typer.Option(1, "--keep", help="With --select-at: how many seeds train on to the end."),
) -> None:
    """Train a model from a preset, or resume a run.

    Writes ckpt.pt, metrics.jsonl, preset.toml and traversals.gif into the run directory.
    """
    from jvae.runs import runplan
    from jvae.studies.study import parse_seeds
    from jvae.training import trainer

    select = check_selection(select)
    at = selection_step(select, select_at, keep)
    if on_collapse is not None:
        if on_collapse not in ("warn", "restart"):
            raise fail(f"--on-collapse takes warn or restart, not {on_collapse!r}", 2)
        overrides = [*overrides, f'train.on_collapse="{on_collapse}"']
    if select is not None and seeds is None and (resume is None or not _stack_to_resume(resume)):
        raise fail("--select chooses among a stack's models; add --seeds (or --resume a stack)", 2)
    with user_errors():
        if resume is not None:
            if preset is not None:
                raise fail("--resume continues a run with its own preset; leave out --preset", 2)
            if out_dir is not None:
                raise fail("--resume continues in its own directory; leave out --out", 2)
            if seeds is not None or members_file is not None:
                raise fail("--resume continues a stack with its own seeds; leave out --seeds", 2)
            plan = runplan.resumed(resume, overrides)
        elif preset is None:
            raise fail("pass --preset NAME (see `jvae presets`) or --resume RUN_DIR", 2)
        elif members_file is not None:
            if seeds is not None or out_dir is None or nproc > 1:
                raise fail("--members takes --preset and --out, without --seeds or --nproc", 2)
            plan = runplan.members_from_file(preset, overrides, members_file, out_dir)
        elif seeds is not None:
            names = None if folders is None else [name.strip() for name in folders.split(",")]
            plan = runplan.seeded(preset, overrides, parse_seeds(seeds), out_dir, names)
        else:
            plan = runplan.new(preset, overrides, out_dir)
        if folders is not None and seeds is None:
            raise fail("--folders names the runs of --seeds; add --seeds", 2)
        if track:
            plan = plan.with_tracking(track)
            overrides = [*overrides, "train.track=" + json.dumps(plan.runs[0].preset.train.track)]
        if nproc > 1:  # checked here first, so a bad preset or folder is one line, not one per process
            if plan.stacked:
                raise fail("stacked models train in one process; leave out --nproc", 2)
            plan.check()
            trainer.check_processes(plan.runs[0].preset, nproc)
            raise typer.Exit(_torchrun(nproc, preset, overrides, data, out_dir, device, resume, profile))
        if plan.stacked and plan.resume:
            assert plan.stack_dir is not None
            earlier = resumed_selection(plan.stack_dir)
            if earlier is not None:
                if select not in (None, earlier[0]):
                    raise fail(
                        f"{plan.stack_dir} was selected early by {earlier[0]}; resume it without --select", 2
                    )
                select, at, keep = earlier
        if plan.stacked and select is not None and at is not None:
            _train_selecting(plan, select, at, keep, data, device)
            return
        _train(plan, data, device, profile)
    if plan.stacked and select is not None:
        assert plan.stack_dir is not None
        _select_stack(plan.stack_dir, select, data, device, [d.name for d in plan.run_dirs])


def _stack_to_resume(path: Path) -> bool:
    from jvae.runs import runfolder

    with user_errors():
        return runfolder.resumable_stack(path) is not None


def _train(plan: RunPlan, data: str | None, device: str, profile: bool) -> None:
    """Train the plan, showing the first run's progress, and say where each run went."""
    from jvae.cli.progress import TrainDisplay, profile_table
    from jvae.runs import runfolder
    from jvae.training import trainer

    with StopOnSignal() as stopper, TrainDisplay() as display:
        results = trainer.train_plan(
            plan, device=device, data_path=data, callbacks=[display], should_stop=stopper, profile=profile
        )
    first = results[0]
    if not first.main:
        return
    if profile:
        err.print(profile_table(first.profile, first.steps_run), markup=False)
    folder = plan.stack_dir if plan.stack_dir is not None else first.run_dir
    if any(result.interrupted for result in results):
        _say_interrupted(plan, first.step, first.total_steps, data)
        raise typer.Exit(stopper.exit_code())
    for result in results:
        if result.collapse is not None and result.collapse.collapsed:
            then = (
                "no restarts were left, so it trained on"
                if result.collapse.action == "kept"
                else "--on-collapse restart would train another seed"
            )
            out.print(
                f"{result.run_dir}: the discrete code of seed {result.collapse.seed} collapsed; {then} (see "
                f"{runfolder.COLLAPSE_RECORD})",
                markup=False,
            )
        elif result.collapse is not None and result.run_dir.joinpath(runfolder.COLLAPSED_ATTEMPTS).is_dir():
            out.print(
                f"{result.run_dir}: seed {result.collapse.seed} kept after restarts (see "
                f"{runfolder.COLLAPSE_RECORD}; the collapsed attempts in {runfolder.COLLAPSED_ATTEMPTS}/)",
                markup=False,
            )
    name = plan.preset_name
    if plan.stacked:
        folders = ", ".join(result.run_dir.name for result in results)
        out.print(
            f"trained {len(results)} stacked {name} models to step {first.step} in {first.seconds:.0f} s "
            f"({first.images_per_sec * len(results):.0f} images/s in all); run folders in {folder}: {folders}",
            markup=False,
        )
        return
    out.print(
        f"trained {name} to step {first.step} in {first.seconds:.0f} s ({first.images_per_sec:.0f} images/s); "
        f"run directory {folder}: {runfolder.CHECKPOINT}, {runfolder.METRICS}, {runfolder.TRAVERSAL}",
        markup=False,
    )


def _say_interrupted(plan: RunPlan, step: int, total: int, data: str | None, flags: str = "") -> None:
    from jvae.runs import runfolder

    folder = plan.stack_dir if plan.stack_dir is not None else plan.run_dirs[0]
    written = (
        f"checkpoints written in each run folder of {folder}"
        if plan.stacked
        else f"checkpoint written to {runfolder.checkpoint(folder)}"
    )
    again = plan.stack_file if plan.within and plan.stack_file is not None else folder
    where = f" --data {shlex.quote(data)}" if data is not None else ""
    err.print(
        f"interrupted at step {step}/{total}; {written}; continue with: "
        f"jvae train --resume {shlex.quote(str(again))}{where}{flags}",
        markup=False,
    )


def _train_selecting(plan: RunPlan, select: str, at: float, keep: int, data: str | None, device: str) -> None:
    """Train the stack to the early step, rank its seeds there, train the best on, and say what it saved."""
    from functools import partial

    from jvae.base.devices import resolve_device
    from jvae.cli.progress import TrainDisplay
    from jvae.runs.runfolder import SELECTED_LINK
    from jvae.studies.early_selection import train_selecting
    from jvae.training import trainer

    assert plan.stack_dir is not None
    with StopOnSignal() as stopper, TrainDisplay() as display:
        train = partial(
            trainer.train_plan, device=device, data_path=data, callbacks=[display], should_stop=stopper
        )
        outcome = train_selecting(
            plan, select, at, keep, train=train, device=resolve_device(device), data_path=data
        )
    if outcome.early is not None:
        print_selections([([], outcome.early)])
    if outcome.interrupted:
        last = next(r for r in outcome.results if r.interrupted and not r.paused)
        flags = "" if outcome.early is not None else f" --select {select} --select-at {at:g} --keep {keep}"
        _say_interrupted(plan, last.step, last.total_steps, data, flags)
        raise typer.Exit(stopper.exit_code())
    stopped = len(plan.runs) - len(outcome.kept)
    out.print(
        f"stopped {stopped} of {len(plan.runs)} seeds at step {outcome.step} by {select}, trained "
        f"{', '.join(outcome.kept)} to the end: {outcome.saved:.0%} of the stack's steps saved",
        markup=False,
    )
    if outcome.final is not None:
        print_selections([([], outcome.final)])
    out.print(f"selected {outcome.selected}: {plan.stack_dir / SELECTED_LINK}", markup=False)


def _select_stack(stack_dir: Path, select: str, data: str | None, device: str, folders: list[str]) -> None:
    """With --select, score the stack's models against each other and link the chosen one."""
    from jvae.base.devices import resolve_device
    from jvae.runs.runfolder import SELECTED_LINK
    from jvae.studies.selection import select_groups

    with user_errors():
        groups = select_groups(
            stack_dir, [stack_dir / name for name in folders], data, resolve_device(device), True, select
        )
    print_selections(groups)
    out.print(f"selected {groups[0][1].selected}: {stack_dir / SELECTED_LINK}", markup=False)


def _torchrun(
    nproc: int,
    preset: str | None,
    overrides: list[str],
    data: str | None,
    out_dir: Path | None,
    device: str,
    resume: Path | None,
    profile: bool,
) -> int:
    """Run this same command under torchrun with `nproc` processes on this machine; returns its exit code."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    args += ["-m", "jvae", "train", "--device", device]
    for flag, value in (("--preset", preset), ("--data", data), ("--out", out_dir), ("--resume", resume)):
        if value is not None:
            args += [flag, str(value)]
    args += [item for text in overrides for item in ("--set", text)]
    if profile:
        args.append("--profile")
    try:
        return subprocess.run(args, check=False).returncode
    except KeyboardInterrupt:
        return 130
