"""The Python API: a trained model in a line, training and evaluation in a line each.

    import jvae

    model = jvae.load("official:mnist")         # a released model, a run folder or a checkpoint file
    code = model.encode("digit.png")            # paths, PIL images or tensors (B, C, H, W) in [0, 1]
    images = model.decode(code.mode)            # tensors (B, C, H, W) in [0, 1]
    frames = model.traverse("d0", image="digit.png")
    run = jvae.train("digits", out="runs/d", set={"train.steps": 200})

Everything here calls the same engine functions the commands call (`jvae.cli` resolves a checkpoint
argument through `resolve_checkpoint` here), so the two cannot drift apart. Layer 6: it may import every
layer but the command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from jvae.base.callbacks import Callback
from jvae.base.devices import resolve_device
from jvae.base.errors import JvaeError, UsageError
from jvae.base.images import from_picture, load_image
from jvae.modeling.checkpoint import LoadedCheckpoint, load_checkpoint
from jvae.modeling.latents import (
    Unit,
    all_units,
    apply_changes,
    parse_change,
    parse_unit,
    prior_mode,
    prior_sample,
    set_unit,
    traversal_values,
    unit_address,
)
from jvae.modeling.model import Posterior
from jvae.modeling.presets import Preset, load_preset, preset_names
from jvae.runs import runfolder

ImageInput = str | Path | Image.Image | Tensor | np.ndarray
Images = ImageInput | Sequence[ImageInput]


def resolve_checkpoint(source: str | Path) -> Path:
    """The checkpoint file a name stands for: `official:NAME` (fetched and imported on first use),
    `hf:OWNER/NAME[@REVISION]` or a folder `jvae export` wrote (read through safetensors into jvae's cache
    on first use), a run folder (its ckpt.pt), or a checkpoint file as given."""
    from jvae.use import hub, shared
    from jvae.use.pretrained import is_pretrained, resolve

    if is_pretrained(str(source)):
        return resolve(str(source))
    if hub.is_hub_name(str(source)):
        return shared.cached_checkpoint(hub.download(str(source)))
    path = Path(source)
    if path.is_dir():
        inside = runfolder.checkpoint(path)
        if inside.is_file():
            return inside
        if shared.is_shared(path):
            return shared.cached_checkpoint(path)
        if any(p.suffix.lower() in shared.PICKLES for p in path.iterdir()):
            shared.check_shared(path)  # says why a folder of pickles is refused
        raise JvaeError(
            f"{path} is a folder without a {runfolder.CHECKPOINT} or a {shared.WEIGHTS}: not a run folder or "
            "a shared jvae model"
        )
    return path


@dataclass(frozen=True)
class Code:
    """q(z, c | x) of a batch: the Gaussian means and log-variances and each discrete variable's category
    probabilities; `mode` is the deterministic code the decoder reads (means and one-hot argmax)."""

    mean: Tensor  # (B, D)
    logvar: Tensor  # (B, D)
    probs: list[Tensor]  # each (B, K_i)
    mode: Tensor  # (B, latent)

    @property
    def categories(self) -> list[Tensor]:
        """The most likely category of each discrete variable, (B,) each."""
        return [p.argmax(dim=-1) for p in self.probs]


@dataclass(frozen=True)
class UnitInfo:
    """One row of the unit table: how to address the unit, its name (where the checkpoint has one) and its
    mean KL from the prior (where it was measured), in nats."""

    address: str  # `3` for continuous unit 3, `d0` for the first discrete variable
    name: str | None
    kl: float | None


class Model:
    """A trained model and its preset, on a device, in evaluation mode. Images in are paths, PIL images or
    tensors in [0, 1] (resized and converted to the model's channels as the commands do); images out are
    float tensors (B, C, H, W) in [0, 1] on the CPU."""

    def __init__(self, loaded: LoadedCheckpoint, device: torch.device) -> None:
        self._loaded = loaded
        self.device = device
        self.network = loaded.model.to(device).eval()

    @property
    def preset(self) -> Preset:
        return self._loaded.preset

    @property
    def path(self) -> Path:
        return self._loaded.path

    @property
    def unit_names(self) -> dict[str, str]:
        return dict(self._loaded.unit_names)

    def to(self, device: str | torch.device) -> Model:
        """This model on `device` (auto, cpu, cuda, cuda:N)."""
        target = resolve_device(str(device))
        self.network = self.network.to(target)
        self.device = target
        return self

    # ------------------------------------------------------------------------------------------- images

    def _batch(self, images: Images) -> Tensor:
        data = self.preset.data
        if isinstance(images, Tensor) and images.dim() == 4:
            return images.float().to(self.device)
        items = cast("Sequence[ImageInput]", images if isinstance(images, (list, tuple)) else [images])
        batch = []
        for item in items:
            if isinstance(item, (str, Path)):
                batch.append(load_image(Path(item), data.channels, data.image_size))
            elif isinstance(item, Image.Image):
                batch.append(from_picture(item, data.channels, data.image_size))
            elif isinstance(item, np.ndarray):
                batch.append(from_picture(Image.fromarray(item), data.channels, data.image_size))
            elif isinstance(item, Tensor) and item.dim() == 3:
                batch.append(item.float())
            else:
                raise UsageError(
                    f"an image is a path, a PIL image or a tensor (C, H, W); got {type(item).__name__}"
                )
        return torch.stack(batch).to(self.device)

    @torch.no_grad()
    def encode(self, images: Images) -> Code:
        posterior: Posterior = self.network.encode(self._batch(images))
        return Code(
            posterior.mean.float().cpu(),
            posterior.logvar.float().cpu(),
            [p.float().cpu() for p in posterior.probs],
            posterior.mode().float().cpu(),
        )

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Images of codes (B, latent) laid out as `Code.mode` is: continuous units, then one-hot blocks."""
        return self.network.decode(codes.float().to(self.device)).float().cpu()

    def reconstruct(self, images: Images) -> Tensor:
        return self.decode(self.encode(images).mode)

    # ------------------------------------------------------------------------------------------- units

    def unit(self, address: str | int) -> Unit:
        """A unit from `3`, `z3`, `d0` or a name the checkpoint stores (`azimuth`)."""
        return parse_unit(str(address), self.network, self.unit_names)

    def units(self) -> list[UnitInfo]:
        """Every unit: continuous ones in order, then the discrete variables."""
        kl = self._loaded.unit_kl or {}
        rows = []
        for unit in all_units(self.network):
            values = kl.get(unit.kind, [])
            rows.append(
                UnitInfo(
                    unit_address(unit),
                    self.unit_names.get(unit_address(unit)),
                    float(values[unit.index]) if unit.index < len(values) else None,
                )
            )
        return rows

    @torch.no_grad()
    def traverse(
        self,
        unit: str | int,
        *,
        image: ImageInput | None = None,
        steps: int = 10,
        low: float = -2.0,
        high: float = 2.0,
    ) -> Tensor:
        """Images (steps, C, H, W) of one unit moved from `low` to `high` (each category of a discrete
        variable), the rest of the code held at `image`'s code or at the prior mode."""
        chosen = self.unit(unit)
        base = self.encode(image).mode if image is not None else prior_mode(self.network).cpu()
        values = traversal_values(self.network, chosen, steps, (low, high))
        return self.decode(torch.cat([set_unit(base, self.network, chosen, v) for v in values]))

    def edit(self, image: ImageInput, **changes: str | float) -> Tensor:
        """`image` with named units changed, as `jvae edit` does: `model.edit(face, azimuth="+2", d0=3)`;
        a number sets the unit, a string `+d` or `-d` adds to it. Returns the edited image (1, C, H, W)."""
        parsed = []
        for address, value in changes.items():
            chosen = self.unit(address)
            text = value if isinstance(value, str) else f"={value}"
            parsed.append(parse_change(chosen, text, self.network))
        code = self.encode(image).mode
        return self.decode(apply_changes(code, self.network, parsed))

    def sample(self, n: int = 16, *, category: int | None = None, seed: int = 0) -> Tensor:
        """`n` images decoded from the prior; `category` fixes the first discrete variable."""
        codes = prior_sample(self.network, n, torch.Generator().manual_seed(seed))
        if category is not None:
            codes = set_unit(codes, self.network, self.unit("d0"), float(category))
        return self.decode(codes)


def load(source: str | Path, device: str = "auto") -> Model:
    """A trained model from `official:NAME`, `hf:OWNER/NAME[@REVISION]`, a folder `jvae export` wrote, a run
    folder or a checkpoint file, on `device`."""
    torch_device = resolve_device(device)
    return Model(load_checkpoint(resolve_checkpoint(source), torch_device), torch_device)


# ----------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Run:
    """A trained run: its folder, checkpoint, metrics log and the step it reached."""

    folder: Path
    step: int
    total_steps: int
    interrupted: bool

    @property
    def checkpoint(self) -> Path:
        return runfolder.checkpoint(self.folder)

    def metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl's lines, oldest first."""
        path = runfolder.metrics(self.folder)
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def load(self, device: str = "auto") -> Model:
        return load(self.folder, device)


def _overrides(values: dict[str, Any] | None) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in (values or {}).items()]


def train(
    preset: str | Path,
    out: str | Path,
    *,
    set: dict[str, Any] | None = None,  # noqa: A002 - the name `jvae train --set` uses
    seeds: Iterable[int] | None = None,
    callbacks: Sequence[Callback] = (),
    device: str = "auto",
    data: str | None = None,
) -> Run | list[Run]:
    """Train `preset` (a name or a .toml file) into `out`, as `jvae train --preset P --out OUT --set K=V`
    does; with `seeds`, one model per seed as one stacked computation into OUT/seed-N (a list of runs)."""
    from jvae.runs import runplan
    from jvae.training.trainer import train_plan

    overrides = _overrides(set)
    if seeds is None:
        plan = runplan.new(str(preset), overrides, Path(out))
    else:
        plan = runplan.seeded(str(preset), overrides, list(seeds), Path(out), None)
    results = train_plan(plan, device=device, data_path=data, callbacks=callbacks)
    runs = [Run(r.run_dir, r.step, r.total_steps, r.interrupted) for r in results]
    return runs if seeds is not None else runs[0]


# ----------------------------------------------------------------------------------------------- reading


def evaluate(
    model: Model | str | Path,
    metrics: Sequence[str] | None = None,
    *,
    data: str | None = None,
    fast: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """The metrics (every one the model's dataset supports when `metrics` is None) as `jvae evaluate`
    computes them, as a dict of name to figure."""
    from jvae.data.registry import open_dataset
    from jvae.evaluation import evaluate as run_metrics
    from jvae.evaluation import supported

    chosen = model if isinstance(model, Model) else load(model)
    source = open_dataset(chosen.preset.data, data)
    available = supported(source, chosen.network)
    unknown = [name for name in metrics or () if name not in available]
    if unknown:
        raise UsageError(
            f"{', '.join(unknown)}: not a metric this model and data support ({', '.join(available)})"
        )
    chosen_metrics = list(metrics) if metrics else None
    report = run_metrics(chosen._loaded, chosen.path, source, chosen.device, chosen_metrics, seed, fast)
    return dict(report.metrics)


def presets() -> dict[str, str]:
    """Every shipped preset's name and one-line description."""
    found = {}
    for name in preset_names():
        _, preset = load_preset(name)
        found[name] = preset.description
    return found


def preset(name: str, set: dict[str, Any] | None = None) -> Preset:  # noqa: A002
    """A preset, validated, with `set` overrides applied (what `jvae presets show NAME` prints)."""
    return load_preset(name, _overrides(set))[1]


def compare(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row per run found under `paths` (run folders, stacks, studies), as `jvae compare` tabulates."""
    from jvae.studies.comparison import collect

    rows, _ = collect([Path(p) for p in paths])
    return rows
