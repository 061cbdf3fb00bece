"""`jvae encode`: codes of image files, folders or a dataset, as .npz, .csv or .jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from jvae.cli.common import DEVICE_HELP, class_option, load, output_path, set_class
from jvae.cli.console import err, fail, out, user_errors

if TYPE_CHECKING:
    from rich.progress import TaskID


EXAMPLES = """Examples:
jvae encode runs/digits/ckpt.pt my_images/ --out codes.csv
jvae encode runs/quickstart/ckpt.pt dsprites --limit 1000 --out codes.npz
"""  # the epilog of --help, and the manual's examples


def encode(
    ckpt: Path = typer.Argument(
        ..., help="A checkpoint (ckpt.pt), a run or exported folder, official:NAME or hf:OWNER/NAME."
    ),
    inputs: list[str] = typer.Argument(
        ..., help="Image files, folders (searched recursively) or a dataset name."
    ),
    out_path: Path = typer.Option(..., "--out", "-o", help="Codes file: .npz, .csv or .jsonl."),
    reconstruct: Path = typer.Option(
        None, "--reconstruct", help="Also write each reconstruction into this folder."
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Images per batch."),
    skip_unreadable: bool = typer.Option(
        False,
        "--skip-unreadable",
        help="Report unreadable images and go on, instead of stopping at the first.",
    ),
    data: str = typer.Option(None, "--data", help="Dataset location, when INPUT is a dataset name."),
    limit: int = typer.Option(None, "--limit", min=1, help="Encode only the first N images of a dataset."),
    label: int | None = class_option(),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Encode images into codes (.npz, .csv or .jsonl).

    Per image its path, continuous means and log-variances, discrete probabilities and argmax.
    """
    from jvae.base.images import image_files
    from jvae.data import DATASETS, open_dataset
    from jvae.data.capabilities import labels_of
    from jvae.modeling.codes import CodeWriter
    from jvae.modeling.presets import DataConfig
    from jvae.use.inference import encode_dataset, encode_files

    output_path(out_path, {".npz", ".csv", ".jsonl"})
    if reconstruct is not None and not reconstruct.is_dir():
        raise fail(f"--reconstruct folder does not exist: {reconstruct}", 1)
    as_dataset = len(inputs) == 1 and inputs[0] in DATASETS and not Path(inputs[0]).exists()
    with user_errors():
        loaded, torch_device = load(ckpt, device)
        if as_dataset:
            own = loaded.preset.data
            config = (
                own
                if own.dataset == inputs[0]
                else DataConfig(dataset=inputs[0], image_size=own.image_size, channels=own.channels)
            )
            source = open_dataset(config, data)
            if labels_of(source) is not None and loaded.model.classes and label is not None:
                raise fail(f"{inputs[0]} has its own labels, which the model reads; leave out --class", 2)
        else:
            paths = image_files(Path(p) for p in inputs)
            if not paths:
                raise fail(f"no images found in {', '.join(inputs)}", 1)
            if out_path.exists() and any(path.resolve() == out_path.resolve() for path in paths):
                raise fail(f"refusing to overwrite the input {out_path}; choose another --out", 1)
        has_labels = as_dataset and labels_of(source) is not None
        set_class(loaded.model, label, needed=not has_labels)
        writer = CodeWriter(out_path, loaded.model.continuous, loaded.model.discrete)
        with _Progress() as progress:
            try:
                if as_dataset:
                    result = encode_dataset(
                        loaded,
                        source,
                        inputs[0],
                        writer,
                        torch_device,
                        limit,
                        batch_size,
                        reconstruct,
                        progress,
                    )
                else:
                    result = encode_files(
                        loaded,
                        paths,
                        writer,
                        torch_device,
                        batch_size,
                        reconstruct,
                        skip_unreadable,
                        progress,
                    )
                writer.close()
            except BaseException:
                writer.abort()
                raise
    for _, reason in result.unreadable:
        err.print(f"skipped: {reason}", markup=False)
    if result.unreadable:
        err.print(f"{len(result.unreadable)} unreadable image(s) skipped", markup=False)
    extra = f", reconstructions in {reconstruct}" if reconstruct is not None else ""
    out.print(f"wrote {result.rows} codes to {out_path}{extra}", markup=False)


class _Progress:
    """A rich progress bar over images on a terminal; silent otherwise (encode prints its summary)."""

    def __enter__(self) -> _Progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress("encode", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err)
        self.task: TaskID | None = None  # added on the first report, when the total is known
        if err.is_terminal:
            self.bar.start()
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task("encode", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()
