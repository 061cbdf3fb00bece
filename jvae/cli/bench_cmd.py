"""`jvae bench`: images/s of jvae's training step against the reference loop, of encode, and metrics time."""

from __future__ import annotations

import json

import typer

from jvae.cli.common import DEVICE_HELP
from jvae.cli.console import err, out, user_errors


def bench(
    preset: str = typer.Option(..., "--preset", "-p", help="Preset name or path to a preset .toml file."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a preset field: section.key=value."
    ),
    steps: int = typer.Option(50, "--steps", min=1, help="Training steps per timed repeat."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed repeats (median, min and max are shown)."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Untimed steps first."),
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, help="Images per step [default: the preset's]."
    ),
    data: str = typer.Option(None, "--data", help="Dataset location; else data.path, else $JVAE_DATA."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Also time evaluate --fast."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    stack: int = typer.Option(
        None,
        "--stack",
        min=2,
        help="Time K models trained as one stack (jvae train --seeds) against single runs and the reference.",
    ),
    engine: str = typer.Option(
        None,
        "--engine",
        help="With --stack: grouped, kernels or concurrent [default: grouped on a GPU, concurrent on a "
        "multi-core CPU, kernels with one thread].",
    ),
    layers: bool = typer.Option(
        False,
        "--layers",
        help="Profile one training step instead: each layer's forward, input and weight gradient, the "
        "sampling, the loss and the optimiser, in ms and as a share of this machine's measured peak.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Measure training throughput on this machine.

    jvae's training step and a plain reference loop, on the same data, in alternation.
    """
    from jvae.base.devices import resolve_device
    from jvae.base.errors import UsageError
    from jvae.data import open_dataset
    from jvae.modeling.presets import load_preset
    from jvae.training.bench import format_report, format_stack_report, run_bench, run_stack_bench
    from jvae.training.stacking import ENGINES

    with user_errors():
        if engine is not None and stack is None:
            raise UsageError("--engine chooses how --stack computes; add --stack K")
        if engine is not None and engine not in ENGINES:
            raise UsageError(f"--engine {engine!r}: choose {', '.join(ENGINES)}")
        sets = [*overrides, *([f"train.batch_size={batch_size}"] if batch_size else [])]
        name, resolved = load_preset(preset, sets)
        if layers:
            from jvae.training.layer_profile import check_profilable

            check_profilable(resolved)  # before the data is read
        torch_device = resolve_device(device)
        source = open_dataset(resolved.data, data)
        say = lambda text: err.print(f"timing {text}", markup=False)  # noqa: E731
        if layers:
            from jvae.training.layer_profile import format_profile, profile_layers

            profile = profile_layers(
                resolved, name, source, torch_device, steps=steps, repeats=repeats, warmup=warmup,
                models=stack, engine=engine, status=say,
            )  # fmt: skip
            figures, table = profile.as_dict(), format_profile(profile)
        elif stack is not None:
            stacked = run_stack_bench(
                resolved, name, source, torch_device, stack, steps=steps, repeats=repeats, warmup=warmup,
                status=say, engine=engine,
            )  # fmt: skip
            figures, table = stacked.as_dict(), format_stack_report(stacked)
        else:
            report = run_bench(
                resolved, name, source, torch_device, steps=steps, repeats=repeats, warmup=warmup,
                with_metrics=metrics, status=say,
            )  # fmt: skip
            figures, table = report.as_dict(), format_report(report)
    if as_json:
        out.print_json(json.dumps(figures))
    else:
        out.print(table, markup=False, highlight=False)
