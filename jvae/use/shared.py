"""A trained model as the field shares models: a folder of safetensors weights, their config and a card.

`jvae export` writes the folder from a run (or any model jvae loads); `jvae push` uploads it to the Hugging
Face Hub. Wherever a checkpoint is accepted, such a folder (or `hf:OWNER/NAME`, downloaded into the hub's own
cache) is too: it is read through safetensors alone, after checking every size and name against the model
its preset builds, and turned once into a jvae checkpoint in jvae's cache, so every command and the Python
API work on it unchanged. A shared folder never holds a pickle, and one that holds only a `.pt` or `.bin` is
refused.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from jvae.base.errors import JvaeError, PresetError
from jvae.base.files import write_text, write_via
from jvae.base.media import write_gif
from jvae.base.runfiles import RunFileError, read_json
from jvae.base.version import __version__
from jvae.data.cache import cache_root
from jvae.modeling.builder import build_model
from jvae.modeling.checkpoint import Checkpoint, file_sha256, load_checkpoint
from jvae.modeling.latents import UnitKL, all_units, prior_mode, ranked_units, unit_address
from jvae.modeling.model import JointVAE
from jvae.modeling.presets import load_preset, preset_names, preset_to_toml, validate_preset
from jvae.runs import runfolder
from jvae.use.figures import traversal_frames, unit_label

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
OPTIMIZER = "optimizer.safetensors"
SHARED_FORMAT = "jvae-model"
SHARED_VERSION = 1
WEIGHTS_MAX = 2 << 30  # bytes: the largest preset's weights are a few hundred MB
HEADER_MAX = 8 << 20  # a safetensors header listing a few hundred tensors is kilobytes
CONFIG_MAX = 4 << 20
NAME_MAX = 64
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
PICKLES = (".pt", ".pth", ".bin", ".pkl", ".ckpt")


class SharedError(JvaeError):
    """A folder or repository that is not a jvae model this version can read."""


class _Config(BaseModel):
    """config.json: what rebuilds the model around the weights, checked before anything is built."""

    model_config = ConfigDict(strict=True, extra="ignore")

    format: str
    format_version: int = Field(ge=1)
    jvae_version: str = Field(max_length=64)
    preset_name: str = Field(max_length=200)
    preset: dict[str, Any]
    step: int = Field(ge=0)
    unit_names: dict[str, str] = Field(default_factory=dict, max_length=10000)
    unit_kl: dict[str, Any] | None = None  # checked as a checkpoint's when the model loads
    weights_sha256: str | None = Field(None, max_length=64)


@dataclass(frozen=True)
class Exported:
    folder: Path
    files: list[Path]


# ----------------------------------------------------------------------------------------------- export


def export(
    checkpoint_path: Path,
    out: Path,
    *,
    run_dir: Path | None = None,
    repo_id: str | None = None,
    license_name: str = "other",
    with_optimizer: bool = False,
) -> Exported:
    """Write the shared folder of the checkpoint at `checkpoint_path` into `out` (new or empty). `run_dir`:
    the run folder it came from, whose traversal GIF and report go along."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SharedError(f"{out} is not an empty folder; export writes into a new or empty one")
    loaded = load_checkpoint(checkpoint_path)  # read, its preset validated, the model built and loaded
    checkpoint, preset = loaded.checkpoint, loaded.preset
    if with_optimizer and checkpoint.state is None:
        raise SharedError(f"{checkpoint_path} holds no optimiser state (an imported or exported model)")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, write: Any) -> None:
        path = out / name
        write_via(path, write)
        written.append(path)

    from safetensors.torch import save_file

    weights = {key: value.detach().contiguous() for key, value in checkpoint.model.items()}
    metadata = {"format": SHARED_FORMAT, "jvae_version": __version__, "preset_name": checkpoint.preset_name}
    put(WEIGHTS, lambda path: save_file(weights, str(path), metadata=metadata))
    config = {
        "format": SHARED_FORMAT,
        "format_version": SHARED_VERSION,
        "jvae_version": __version__,
        "preset_name": checkpoint.preset_name,
        "preset": checkpoint.preset,
        "step": checkpoint.step,
        "unit_names": dict(checkpoint.unit_names),
        "unit_kl": checkpoint.unit_kl,
        "weights_sha256": file_sha256(out / WEIGHTS),
    }
    put(CONFIG, lambda path: path.write_text(json.dumps(config, indent=1) + "\n"))
    put(runfolder.PRESET_FILE, lambda path: path.write_text(preset_to_toml(preset)))
    if with_optimizer and checkpoint.state is not None:
        flat = _flat_optimizer(checkpoint.state.optimizer)
        put(OPTIMIZER, lambda path: save_file(flat, str(path)))
    report = None
    if run_dir is not None:
        gif = Path(run_dir) / runfolder.TRAVERSAL
        if gif.is_file():
            put(runfolder.TRAVERSAL, lambda path: path.write_bytes(gif.read_bytes()))
        report_json = runfolder.report_file(runfolder.report_folder(Path(run_dir)))
        if report_json.is_file():
            try:
                report = read_json(report_json)
            except RunFileError:
                report = None
            if isinstance(report, dict):
                put(runfolder.REPORT_JSON, lambda path: path.write_text(json.dumps(report, indent=1) + "\n"))
    if not (out / runfolder.TRAVERSAL).is_file():
        put(runfolder.TRAVERSAL, lambda path: _prior_traversal(loaded.model, checkpoint, path))
    card = model_card(
        config, preset.data.dataset, report, (out / runfolder.TRAVERSAL).is_file(), repo_id, license_name
    )
    write_text(out / CARD, card)
    written.append(out / CARD)
    return Exported(out, written)


def _prior_traversal(model: JointVAE, checkpoint: Checkpoint, path: Path) -> None:
    """For a model without its run's GIF: its units (the most informative first, where their KL is known,
    with the unused ones left out) moved one at a time from the prior's mode, no data needed."""
    if model.classes and model.default_class is None:
        model.default_class = 0
    stored = checkpoint.unit_kl or {}
    kl = UnitKL(
        [float(v) for v in stored.get("continuous", [])] or [1.0] * model.continuous,
        [float(v) for v in stored.get("discrete", [])] or [1.0] * len(model.discrete),
    )
    units = [unit for unit in ranked_units(model, kl) if unit.kind == "discrete" or kl.of(unit) > 0.05]
    units = units or all_units(model)[:1]
    labels = [unit_label(unit, checkpoint.unit_names, kl) for unit in units]
    with torch.no_grad():
        frames = traversal_frames(
            model, prior_mode(model, 1, "cpu"), units, 10, labels, scale=2 if model.image_size <= 32 else 1
        )
    write_gif(frames, path, duration_ms=100)


def _flat_optimizer(state: dict[str, Any]) -> dict[str, Tensor]:
    """Adam's per-parameter tensors under `state.INDEX.NAME`; its settings are in the preset."""
    flat: dict[str, Tensor] = {}
    for index, entry in state.get("state", {}).items():
        for name, value in entry.items():
            tensor = value if isinstance(value, Tensor) else torch.tensor(value)
            flat[f"state.{index}.{name}"] = tensor.detach().contiguous()
    return flat


def training_command(preset_name: str, preset: dict[str, Any]) -> str:
    """`jvae train` with the shipped preset and the --set lines that make it this model's preset."""
    if preset_name not in preset_names():
        return f"jvae train --preset {runfolder.PRESET_FILE}  # the preset.toml beside this card"
    shipped = load_preset(preset_name)[1].model_dump(mode="json")
    changes = [
        f"--set {shlex.quote(f'{path}={json.dumps(value)}')}"
        for path, value in _leaves(preset)
        if _at(shipped, path) != value
    ]
    return " ".join(["jvae train --preset", preset_name, *changes])


def _leaves(body: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key, value in body.items():
        if isinstance(value, dict) and value:
            found += _leaves(value, f"{prefix}{key}.")
        elif value is not None:
            found.append((f"{prefix}{key}", value))
    return found


def _at(body: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(body, dict) or key not in body:
            return None
        body = body[key]
    return body


def model_card(
    config: dict[str, Any],
    dataset: str,
    report: dict[str, Any] | None,
    with_gif: bool,
    repo_id: str | None,
    license_name: str,
) -> str:
    """The README.md the Hub shows: metadata, the traversal, the units, the metrics and the commands."""
    preset = validate_preset(config["preset"], "config.json preset")
    kind = preset.loss.kind
    name = repo_id or "OWNER/NAME"
    lines = [
        "---",
        "library_name: jvae",
        f"license: {license_name}",
        "tags:",
        "- jvae",
        "- disentanglement",
        "- vae",
        f"- {kind}",
        "datasets:",
        f"- {dataset}",
        "---",
        "",
        f"# {config['preset_name']}: {kind} on {dataset}",
        "",
        f"{preset.description}. "
        + (
            f"Trained by jvae {config['jvae_version']} for {config['step']} steps."
            if config["step"]
            else f"Exported by jvae {config['jvae_version']}."
        ),
        "",
    ]
    if with_gif:
        lines += [f"![Latent traversals]({runfolder.TRAVERSAL})", ""]
    model = build_model(preset)
    kl = config.get("unit_kl") or {}
    names = config.get("unit_names") or {}
    lines += ["## Units", "", "| unit | kind | name | mean KL (nats) |", "|---|---|---|---|"]
    for unit in all_units(model):
        values = kl.get(unit.kind, [])
        value = f"{values[unit.index]:.3f}" if unit.index < len(values) else ""
        kind_text = (
            "continuous" if unit.kind == "continuous" else f"discrete ({model.discrete[unit.index]}-way)"
        )
        address = unit_address(unit)
        lines.append(f"| {address} | {kind_text} | {_cell(names.get(address, ''))} | {value} |")
    lines.append("")
    metrics = (report or {}).get("metrics") if isinstance(report, dict) else None
    if isinstance(metrics, dict) and metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        for metric, number in _numbers(metrics):
            lines.append(f"| {_cell(metric)} | {number:.4f} |")
        lines.append("")
    lines += [
        "## Use it",
        "",
        "```bash",
        "pip install jvae",
        f"jvae traverse hf:{name} --unit 0 --out traversal.gif",
        f"jvae sample hf:{name} --out samples.png",
        "```",
        "",
        "```python",
        "import jvae",
        "",
        f'model = jvae.load("hf:{name}")',
        "code = model.encode(images)",
        "```",
        "",
        "## Train it again",
        "",
        "```bash",
        training_command(config["preset_name"], config["preset"]),
        "```",
        "",
        "The weights are `model.safetensors` (no pickle); `config.json` holds the preset that rebuilds the",
        "network around them, the unit names and their KL.",
        "",
    ]
    return "\n".join(lines)


def _numbers(body: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = []
    for key, value in body.items():
        if isinstance(value, dict):
            found += _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append((f"{prefix}{key}", float(value)))
    return found


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:NAME_MAX]


# ----------------------------------------------------------------------------------------------- import


def is_shared(folder: Path) -> bool:
    return Path(folder).is_dir() and (Path(folder) / CONFIG).is_file() and (Path(folder) / WEIGHTS).is_file()


def check_shared(folder: Path) -> None:
    """Refuse a folder that is not a shared jvae model, naming what it holds instead."""
    folder = Path(folder)
    if is_shared(folder):
        return
    pickles = (
        sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLES) if folder.is_dir() else []
    )
    if pickles:
        raise SharedError(
            f"{folder}: holds {', '.join(pickles[:3])} but no {WEIGHTS}: jvae reads shared models through "
            "safetensors only, never a pickle"
        )
    raise SharedError(f"{folder}: not a jvae model folder (no {WEIGHTS} and {CONFIG})")


def read_shared(folder: Path) -> Checkpoint:
    """The model in `folder` as a checkpoint (no training state), every size and name checked first."""
    folder = Path(folder)
    check_shared(folder)
    config = _read_config(folder / CONFIG)
    preset = _preset_of(config, folder)
    expected = {key: tuple(value.shape) for key, value in build_model(preset).state_dict().items()}
    _check_weights(folder / WEIGHTS, expected)
    if config.weights_sha256 is not None and config.weights_sha256 != file_sha256(folder / WEIGHTS):
        raise SharedError(
            f"{folder / WEIGHTS}: not the weights its {CONFIG} was written for (sha256 differs)"
        )
    from safetensors.torch import load_file

    try:
        weights = load_file(str(folder / WEIGHTS))
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError subclasses
        raise SharedError(f"{folder / WEIGHTS}: not readable as safetensors ({str(exc)[:160]})") from None
    checkpoint = Checkpoint(
        preset_name=config.preset_name,
        preset=config.preset,
        model={key: value.float() for key, value in weights.items()},
        step=config.step,
        unit_names=dict(config.unit_names),
        unit_kl=config.unit_kl,
        imported={"source": f"shared folder {folder}", "jvae_version": config.jvae_version},
    )
    return checkpoint


def _read_config(path: Path) -> _Config:
    try:
        body = read_json(path, CONFIG_MAX)
        config = _Config.model_validate(body)
    except RunFileError as exc:
        raise SharedError(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise SharedError(f"{path}: not a jvae model config ({where}: {first['msg']})") from None
    if config.format != SHARED_FORMAT:
        raise SharedError(f"{path}: not a jvae model config (format {config.format[:40]!r})")
    if config.format_version > SHARED_VERSION:
        raise SharedError(
            f"{path}: written by jvae {config.jvae_version} in a newer format ({config.format_version}); "
            f"this is jvae {__version__}: upgrade jvae to read it"
        )
    bad = [name for name in config.unit_names.values() if len(name) > NAME_MAX or not name.isprintable()]
    if bad or any(len(address) > 16 for address in config.unit_names):
        raise SharedError(f"{path}: unit names must be printable and at most {NAME_MAX} characters")
    return config


def _preset_of(config: _Config, folder: Path) -> Any:
    try:
        return validate_preset(config.preset, f"{folder / CONFIG} preset")
    except PresetError as exc:
        newer = _newer(config.jvae_version)
        hint = (
            f" (written by jvae {config.jvae_version}, newer than this jvae {__version__}: upgrade)"
            if newer
            else ""
        )
        raise SharedError(f"{folder / CONFIG}: its preset does not validate: {exc}{hint}") from None


def _newer(version: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        numbers = []
        for piece in text.split(".")[:3]:
            digits = "".join(ch for ch in piece if ch.isdigit())
            numbers.append(int(digits[:6]) if digits else 0)
        return tuple(numbers)

    return parts(version) > parts(__version__)


def _check_weights(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """The safetensors header, read by hand within bounds, lists exactly the model's tensors and shapes."""
    size = path.stat().st_size
    if size > WEIGHTS_MAX:
        raise SharedError(
            f"{path}: {size / 2**30:.1f} GiB, more than any jvae model ({WEIGHTS_MAX >> 30} GiB)"
        )
    with open(path, "rb") as handle:
        start = handle.read(8)
        if len(start) < 8:
            raise SharedError(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", start)
        if length > HEADER_MAX or 8 + length > size:
            raise SharedError(f"{path}: not a safetensors file (its header declares {length} bytes)")
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise SharedError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise SharedError(f"{path}: not a safetensors file (its header is not a table)")
    header.pop("__metadata__", None)
    names = set(header)
    missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
    if missing or extra:
        shown = (f"missing {_names(missing)}" if missing else "") + (
            f"{'; ' if missing else ''}unexpected {_names(extra)}" if extra else ""
        )
        raise SharedError(f"{path}: the tensors do not fit the preset's model ({shown})")
    data = size - 8 - length
    for name, entry in header.items():
        ok = (
            isinstance(entry, dict)
            and entry.get("dtype") in DTYPES
            and isinstance(entry.get("shape"), list)
            and tuple(entry["shape"]) == expected[name]
            and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2
            and all(isinstance(o, int) and 0 <= o <= data for o in entry["data_offsets"])
        )
        if not ok:
            raise SharedError(
                f"{path}: tensor {_names([name])} does not fit the preset's model (shape {expected[name]})"
            )


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name[:60]) for name in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def cached_checkpoint(folder: Path) -> Path:
    """The shared model in `folder` as a jvae checkpoint in jvae's cache, written on first use."""
    folder = Path(folder)
    check_shared(folder)
    for name, most in ((CONFIG, CONFIG_MAX), (WEIGHTS, WEIGHTS_MAX)):
        if (folder / name).stat().st_size > most:
            raise SharedError(f"{folder / name}: larger than any jvae model's ({most} bytes at most)")
    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        digest.update(file_sha256(folder / name).encode())
    target = cache_root() / "shared" / digest.hexdigest()[:32] / runfolder.CHECKPOINT
    if not target.is_file():
        checkpoint = read_shared(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save(target)
    return target
