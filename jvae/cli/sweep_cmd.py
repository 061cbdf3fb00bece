"""`jvae sweep`: presets x seeds x a grid of --set values, one run folder each, locally or on Slurm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from jvae.cli.console import err, fail, out, user_errors
from jvae.cli.selecting import check_selection, print_selections

EXAMPLES = """Examples:
jvae sweep -p quickstart --seeds 0-4 --evaluate --out studies/quickstart
jvae sweep -p dsprites-beta-vae --grid loss.beta=1,4,16 --out beta -j 2
jvae sweep -p dsprites --seeds 0-9 --out ds --slurm --gpus-per-job 1
"""  # the epilog of --help, and the manual's examples


def sweep(
    presets: list[str] = typer.Option([], "--preset", "-p", help="Preset name or file (repeatable)."),
    seeds: str = typer.Option("0", "--seeds", help="Seeds: a range 0-4 or a list 0,3,7."),
    grid: list[str] = typer.Option(
        [], "--grid", help="section.key=v1,v2,...: every value is a run (repeatable; keys combine)."
    ),
    overrides: list[str] = typer.Option([], "--set", "-s", help="A fixed override for every run."),
    evaluate: bool = typer.Option(False, "--evaluate", help="Evaluate each run (jvae evaluate --fast)."),
    metrics: list[str] = typer.Option([], "--metrics", help="With --evaluate: only these metrics."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="The study folder (created; rerun to resume)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, max=256, help="Runs at once on this machine."),
    stack: int = typer.Option(
        None,
        "--stack",
        min=1,
        max=64,
        help="Train up to K new runs that differ only in their seed as one stacked process (jvae train "
        "--seeds) [default: 8 with a GPU, else 1].",
    ),
    slurm: bool = typer.Option(False, "--slurm", help="Submit the runs as a Slurm job array (submitit)."),
    partition: str = typer.Option(None, "--partition", help="--slurm: the partition."),
    time_limit: str = typer.Option(
        None, "--time", help="--slurm: time per job, HH:MM:SS [default: 4:00:00]."
    ),
    gpus_per_job: int = typer.Option(None, "--gpus-per-job", min=0, max=16, help="--slurm: GPUs per job."),
    cpus_per_job: int = typer.Option(None, "--cpus-per-job", min=1, max=512, help="--slurm: CPUs per job."),
    slurm_cluster: str = typer.Option(
        None,
        "--slurm-cluster",
        help="--slurm: slurm [default], or local to run the same submission as processes on this machine.",
    ),
    select: str | None = typer.Option(
        None,
        "--select",
        metavar="CRITERION",
        help="A criterion (best, udr, agreement, elbo, recon, information, perplexity): when every run has "
        "finished, score the runs of each setting without labels and name the best of each in OUT/udr.json.",
    ),
) -> None:
    """Run a study: every preset x seed x grid value, one run each.

    Every combination gets its own run folder under --out with a manifest (study.json). Rerunning skips
    finished runs, resumes interrupted ones and retries failed ones."""
    from jvae.studies.study import (
        SlurmSettings,
        Study,
        check_study,
        parse_grid,
        parse_seeds,
        prepare,
        run_local,
        run_slurm,
    )

    slurm_only = {
        "--partition": partition,
        "--time": time_limit,
        "--gpus-per-job": gpus_per_job,
        "--cpus-per-job": cpus_per_job,
        "--slurm-cluster": slurm_cluster,
    }
    given = [flag for flag, value in slurm_only.items() if value is not None]
    if given and not slurm:
        raise fail(f"{given[0]} is a Slurm option; add --slurm", 2)
    if slurm and jobs != 1:
        raise fail("--jobs is for local runs; Slurm runs every job of the array at once", 2)
    if metrics and not evaluate:
        raise fail("--metrics chooses what --evaluate computes; add --evaluate", 2)
    if slurm_cluster not in (None, "slurm", "local"):
        raise fail(f"--slurm-cluster {slurm_cluster!r}: choose slurm or local", 2)
    select = check_selection(select)
    with user_errors():
        study = Study(
            list(presets), parse_seeds(seeds), parse_grid(grid), list(overrides), evaluate, list(metrics)
        )
        check_study(study)
        if slurm:
            import importlib.util

            if importlib.util.find_spec("submitit") is None:
                raise fail('--slurm needs the slurm extra: pip install "jvae[slurm]"', 2)
        if stack is None:
            stack = 8 if (slurm and gpus_per_job) or (not slurm and _has_gpu()) else 1
        runs = prepare(out_dir, study)
        err.print(f"study {out_dir}: {len(runs)} runs", markup=False)

        def report(result: dict[str, Any]) -> None:
            err.print(
                f"{result.get('name')}: {result.get('state')} (exit {result.get('returncode')}, "
                f"{result.get('seconds', 0.0):.0f} s)",
                markup=False,
            )

        if slurm:
            settings = SlurmSettings(
                partition,
                time_limit or "4:00:00",
                gpus_per_job or 0,
                cpus_per_job or 1,
                slurm_cluster or "slurm",
            )
            results = run_slurm(out_dir, study, runs, settings, report, stack)
        else:
            results = run_local(out_dir, study, runs, jobs, report, stack)
    failed = [r for r in results if r.get("state") != "finished"]
    done = len(runs) - len(failed)
    out.print(f"{done}/{len(runs)} runs finished in {out_dir}", markup=False)
    if failed:
        raise fail(
            f"{len(failed)} run(s) did not finish (see {out_dir / 'logs'}); rerun the same command to retry",
            1,
        )
    if select is not None:
        from jvae.studies.selection import select_in_study

        with user_errors():
            print_selections(select_in_study(out_dir, criterion=select))


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
