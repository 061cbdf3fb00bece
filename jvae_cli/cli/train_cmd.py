"""`jvae train`: train a preset into a run directory, or resume one."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from jvae_cli.cli.console import err, fail, out, user_errors
from jvae_cli.cli.selecting import check_selection, print_selections
from jvae_cli.limits import STACK_MAX

if TYPE_CHECKING:
    from jvae_cli.presets import Preset

EXIT_BY_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
RESUMABLE = {  # what a resume may change without changing the weights it trains
    "train.steps",
    "train.epochs",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.eval_every",
    "train.eval_images",
    "train.eval_mig",
    "train.track",
}


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
        hidden=True,
        help="A stack's runs as JSON, as jvae sweep writes it: [{folder, seed, sets}, ...], each trained "
        "from --preset with its own --set values into OUT/folder.",
    ),
    profile: bool = typer.Option(
        False,
        "--profile",
        help="Print where a step's time goes (data, forward, backward, optimizer, logging).",
    ),
    select: str = typer.Option(
        None,
        "--select",
        help="With --seeds: udr scores the trained models against each other without labels (UDR) and "
        "links OUT/selected to the best.",
    ),
) -> None:
    """Train a model from a preset, or resume a run.

    Writes ckpt.pt, metrics.jsonl, preset.toml and traversals.gif into the run directory.
    """
    from jvae_cli import trainer
    from jvae_cli.checkpoint import read_checkpoint
    from jvae_cli.cli.progress import TrainDisplay, profile_table
    from jvae_cli.presets import apply_overrides, load_preset, validate_preset
    from jvae_cli.study import parse_seeds

    check_selection(select)
    if select is not None and seeds is None and (resume is None or not trainer.is_stack(resume)):
        raise fail("--select chooses among a stack's models; add --seeds (or --resume a stack)", 2)
    with user_errors():
        if resume is not None:
            if preset is not None:
                raise fail("--resume continues a run with its own preset; leave out --preset", 2)
            if out_dir is not None:
                raise fail("--resume continues in its own directory; leave out --out", 2)
            bad = [o for o in overrides if o.partition("=")[0].strip() not in RESUMABLE]
            if bad:
                allowed = ", ".join(sorted(RESUMABLE))
                raise fail(
                    f"--resume accepts only overrides that keep the run exact ({allowed}), not {bad[0]!r}", 2
                )
            if seeds is not None or members_file is not None:
                raise fail("--resume continues a stack with its own seeds; leave out --seeds", 2)
            if trainer.is_stack(resume):
                _resume_stack(resume, overrides, data, device, profile)
                _select_stack(resume, select, data, device)
                return
            checkpoint = read_checkpoint(resume / trainer.CHECKPOINT)
            name = checkpoint.preset_name
            resolved = validate_preset(apply_overrides(checkpoint.preset, overrides), f"{resume} preset")
            run_dir = resume
        else:
            if preset is None:
                raise fail("pass --preset NAME (see `jvae presets`) or --resume RUN_DIR", 2)
            name, resolved = load_preset(preset, overrides)
            run_dir = out_dir if out_dir is not None else Path("runs") / name
        if track:
            resolved = _tracked(resolved, track)
            overrides = [*overrides, "train.track=" + json.dumps(resolved.train.track)]
        if folders is not None and seeds is None:
            raise fail("--folders names the runs of --seeds; add --seeds", 2)
        if members_file is not None:
            if seeds is not None or out_dir is None or nproc > 1:
                raise fail("--members takes --preset and --out, without --seeds or --nproc", 2)
            members = _listed(preset, overrides, members_file)
            _run_stack(members, name, run_dir, data, device, False, profile, within=True)
            return
        if seeds is not None:
            if nproc > 1:
                raise fail("stacked models train in one process; leave out --nproc", 2)
            members = _seeded(resolved, parse_seeds(seeds), folders)
            _run_stack(members, name, run_dir, data, device, False, profile, within=folders is not None)
            _select_stack(run_dir, select, data, device, [folder for folder, _ in members])
            return
        if nproc > 1:  # checked here first, so a bad preset or folder is one line, not one per process
            trainer.check_run_dir(run_dir, resume is not None)
            trainer.check_processes(resolved, nproc)
            raise typer.Exit(_torchrun(nproc, preset, overrides, data, out_dir, device, resume, profile))

        with StopOnSignal() as stopper, TrainDisplay() as display:
            result = trainer.train(
                resolved,
                name,
                run_dir,
                device=device,
                data_path=data,
                resume=resume is not None,
                callbacks=[display],
                should_stop=stopper,
                profile=profile,
            )
    if not result.main:
        return
    if profile:
        err.print(profile_table(result.profile, result.steps_run), markup=False)
    if result.interrupted:
        err.print(
            f"interrupted at step {result.step}/{result.total_steps}; checkpoint written to "
            f"{run_dir / trainer.CHECKPOINT}; continue with: jvae train --resume {run_dir}",
            markup=False,
        )
        raise typer.Exit(stopper.exit_code())
    out.print(
        f"trained {name} to step {result.step} in {result.seconds:.0f} s ({result.images_per_sec:.0f} images/s); "
        f"run directory {run_dir}: {trainer.CHECKPOINT}, {trainer.METRICS}, {trainer.TRAVERSAL}",
        markup=False,
    )


def _seeded(preset: Preset, seeds: list[int], folders: str | None) -> list[tuple[str, Preset]]:
    """(folder, preset) of each seed's model: the preset with train.seed set."""
    from jvae_cli.presets import with_seed

    if len(seeds) > STACK_MAX:
        raise fail(f"--seeds: {len(seeds)} seeds; a stack trains at most {STACK_MAX}", 2)
    names = [f"seed-{seed}" for seed in seeds]
    if folders is not None:
        names = [name.strip() for name in folders.split(",")]
        if len(names) != len(seeds) or len(set(names)) != len(names):
            raise fail(f"--folders: {len(seeds)} different names, one per seed, separated by commas", 2)
        if any(not name or Path(name).name != name or name in (".", "..") for name in names):
            raise fail("--folders: plain folder names, without slashes", 2)
    return [(name, with_seed(preset, seed)) for name, seed in zip(names, seeds)]


def _listed(preset: str, overrides: list[str], listing: Path) -> list[tuple[str, Preset]]:
    """(folder, preset) of each run a --members file lists: the preset with the run's own overrides."""
    from jvae_cli.presets import load_preset
    from jvae_cli.runfiles import RunFileError, read_json

    try:
        entries = read_json(listing)
        runs = [(str(e["folder"]), int(e["seed"]), [str(text) for text in e["sets"]]) for e in entries]
    except RunFileError as error:
        detail = str(error).removeprefix(f"{listing}: ")
        raise fail(f"--members {listing}: not a list of {{folder, seed, sets}} ({detail})", 2) from None
    except (ValueError, KeyError, TypeError) as error:
        raise fail(f"--members {listing}: not a list of {{folder, seed, sets}} ({error})", 2) from None
    if len(runs) > STACK_MAX:
        raise fail(f"--members {listing}: {len(runs)} runs; a stack trains at most {STACK_MAX}", 2)
    names = [folder for folder, _, _ in runs]
    if not runs or len(set(names)) != len(names):
        raise fail(f"--members {listing}: one or more runs, each with its own folder", 2)
    if any(not name or Path(name).name != name or name in (".", "..") for name in names):
        raise fail(f"--members {listing}: plain folder names, without slashes", 2)
    return [
        (folder, load_preset(preset, [*overrides, *sets, f"train.seed={seed}"])[1])
        for folder, seed, sets in runs
    ]


def _resume_stack(
    stack_dir: Path, overrides: list[str], data: str | None, device: str, profile: bool
) -> None:
    """Continue every run of the stack in `stack_dir` from its own checkpoint."""
    from jvae_cli import trainer
    from jvae_cli.checkpoint import read_checkpoint
    from jvae_cli.presets import apply_overrides, validate_preset

    members = []
    name = ""
    for folder in trainer.read_stack(stack_dir):
        checkpoint = read_checkpoint(stack_dir / folder / trainer.CHECKPOINT)
        name = checkpoint.preset_name
        preset = validate_preset(
            apply_overrides(checkpoint.preset, overrides), f"{stack_dir / folder} preset"
        )
        members.append((folder, preset))
    _run_stack(members, name, stack_dir, data, device, True, profile)


def _run_stack(
    members: list[tuple[str, Preset]],
    name: str,
    stack_dir: Path,
    data: str | None,
    device: str,
    resume: bool,
    profile: bool,
    within: bool = False,
) -> None:
    """Train the stack, showing the first model's progress, and say where each run went."""
    from jvae_cli import trainer
    from jvae_cli.cli.progress import TrainDisplay, profile_table

    with StopOnSignal() as stopper, TrainDisplay() as display:
        results = trainer.train_stack(
            members,
            name,
            stack_dir,
            device=device,
            data_path=data,
            resume=resume,
            callbacks=[display],
            should_stop=stopper,
            profile=profile,
            within=within,
        )
    first = results[0]
    if profile:
        err.print(profile_table(first.profile, first.steps_run), markup=False)
    if any(result.interrupted for result in results):
        err.print(
            f"interrupted at step {first.step}/{first.total_steps}; checkpoints written in each run folder "
            f"of {stack_dir}; continue with: jvae train --resume {stack_dir}",
            markup=False,
        )
        raise typer.Exit(stopper.exit_code())
    folders = ", ".join(result.run_dir.name for result in results)
    out.print(
        f"trained {len(results)} stacked {name} models to step {first.step} in {first.seconds:.0f} s "
        f"({first.images_per_sec * len(results):.0f} images/s in all); run folders in {stack_dir}: {folders}",
        markup=False,
    )


def _select_stack(
    stack_dir: Path, select: str | None, data: str | None, device: str, folders: list[str] | None = None
) -> None:
    """With --select, score the stack's models against each other and link the chosen one."""
    if select is None:
        return
    from jvae_cli import trainer
    from jvae_cli.devices import resolve_device
    from jvae_cli.selection import SELECTED_LINK, select_groups

    names = folders if folders is not None else trainer.read_stack(stack_dir)
    with user_errors():
        groups = select_groups(
            stack_dir, [stack_dir / name for name in names], data, resolve_device(device), link=True
        )
    print_selections(groups)
    out.print(f"selected {groups[0][1].selected}: {stack_dir / SELECTED_LINK}", markup=False)


def _tracked(preset: Preset, track: list[str]) -> Preset:
    """`preset` also sending the run to the trackers `--track` names."""
    from jvae_cli.presets import validate_preset

    tracked = list(preset.train.track)
    tracked += [name for name in track if name not in tracked]
    train_section = {**preset.train.model_dump(mode="json"), "track": tracked}
    return validate_preset({**preset.model_dump(mode="json"), "train": train_section}, "--track")


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
    args += ["-m", "jvae_cli", "train", "--device", device]
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
