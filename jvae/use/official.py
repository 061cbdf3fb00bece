"""The models the JointVAE paper's authors released, read into ordinary jvae checkpoints.

The official code (Schlumberger/joint-vae, MIT licence) saved five trained models in `trained_models/<name>/`:
`model.pt`, a state dict of its own module names, and `specs.json`, the settings they were trained with. jvae's
network is the official one layer for layer, so importing renames the keys, checks every name and shape, builds
the preset from specs.json and writes a checkpoint that every command reads like one jvae trained. The official
file is opened only with `torch.load(weights_only=True)`: a pickle that would run code is refused.
"""

from __future__ import annotations

import math
import pickle
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from jvae.base.errors import JvaeError, PresetError
from jvae.base.runfiles import RunFileError, read_json
from jvae.modeling.builder import build_model
from jvae.modeling.checkpoint import Checkpoint, file_sha256, load_weights_only
from jvae.modeling.model import CONV_CHANNELS, JointVAE
from jvae.modeling.presets import Preset, validate_preset

SOURCE = "JointVAE official release (github.com/Schlumberger/joint-vae, trained_models/)"
# specs.json's dataset names, and what jvae calls each with the images the official code trained on
DATASETS: dict[str, tuple[str, int, int]] = {  # official name: (jvae dataset, image size, channels)
    "mnist": ("mnist", 32, 1),
    "fashion_mnist": ("fashion-mnist", 32, 1),
    "dsprites": ("dsprites", 64, 1),
    "chairs": ("chairs", 64, 1),
    "celeba": ("celeba", 64, 3),
}


SPECS_MAX_BYTES = 2**20  # the released specs.json files are a few hundred bytes


class OfficialImportError(JvaeError):
    """A folder or file that is not one of the official release's trained models."""


def _read_specs(folder: Path) -> dict[str, Any]:
    path = folder / "specs.json"
    if not path.is_file():
        raise OfficialImportError(
            f"{folder}: no specs.json; expected an official trained_models/<name>/ folder"
        )
    try:
        specs = read_json(path, SPECS_MAX_BYTES)
    except RunFileError as exc:
        raise OfficialImportError(str(exc)) from None
    if not isinstance(specs, dict):
        raise OfficialImportError(f"{path}: expected a JSON object of training settings")
    return specs


def _field(specs: dict[str, Any], key: str, path: str) -> Any:
    if key not in specs:
        raise OfficialImportError(f"{path}: missing {key!r}")
    return specs[key]


def _first(value: Any) -> Any:
    """specs.json stores lr and epochs as one-element (or longer) lists; the first entry is the setting."""
    return value[0] if isinstance(value, list) and value else value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _capacity(value: Any, key: str, path: str) -> dict[str, Any]:
    if not (isinstance(value, list) and len(value) == 4 and all(_number(v) for v in value)):
        raise OfficialImportError(
            f"{path}: {key} must be [start, stop, steps, gamma] of finite numbers, got {_shown(value)}"
        )
    start, stop, steps, gamma = value
    return {"start": float(start), "stop": float(stop), "steps": int(steps), "gamma": float(gamma)}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def preset_from_specs(specs: dict[str, Any], name: str, path: str = "specs.json") -> Preset:
    """The jvae preset that trains what specs.json describes (the official code's own training settings)."""
    dataset = _field(specs, "dataset", path)
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise OfficialImportError(
            f"{path}: dataset {_shown(dataset)} is not one the official code trains ({', '.join(DATASETS)})"
        )
    jvae_dataset, size, channels = DATASETS[dataset]
    latents = _field(specs, "latent_spec", path)
    if not isinstance(latents, dict):
        raise OfficialImportError(f"{path}: latent_spec must be an object with cont and disc")
    raw = {
        "description": f"the JointVAE authors' released {name} model ({SOURCE})",
        "data": {
            "dataset": jvae_dataset,
            "image_size": size,
            "channels": channels,
            # generated dSprites is the published file image for image, so the model works offline
            **({"source": "generated"} if jvae_dataset == "dsprites" else {}),
        },
        "model": {
            "architecture": f"conv{size}",
            "continuous": latents.get("cont", 0),
            "discrete": latents.get("disc", []),
            "temperature": 0.67,
        },
        "loss": {
            "kind": "jointvae",
            # the official loss is mean BCE times H*W, the per-image sum for grey images but not for RGB
            "reconstruction": "bce-official" if channels == 3 else "bce-sum",
            "continuous_capacity": _capacity(_field(specs, "cont_capacity", path), "cont_capacity", path),
            "discrete_capacity": _capacity(_field(specs, "disc_capacity", path), "disc_capacity", path),
        },
        "train": {
            "batch_size": _field(specs, "batch_size", path),
            "lr": _first(_field(specs, "lr", path)),
            "epochs": _first(specs.get("epochs", 100)),
        },
    }
    try:
        return validate_preset(raw, f"{path} (as a jvae preset)")
    except PresetError as exc:
        raise OfficialImportError(str(exc).splitlines()[0]) from None


def official_key(key: str, layers: int) -> str | None:
    """jvae's name for an official state-dict key, or None when the official network has no such key."""
    conv = r"(\d+)\.(weight|bias)"
    if m := re.fullmatch(rf"img_to_features\.{conv}", key):
        return f"encoder.0.{m[1]}.{m[2]}" if int(m[1]) % 2 == 0 and int(m[1]) < 2 * layers else None
    if m := re.fullmatch(rf"features_to_img\.{conv}", key):
        return f"decoder.{m[1]}.{m[2]}" if int(m[1]) % 2 == 0 and int(m[1]) < 2 * layers else None
    if m := re.fullmatch(r"features_to_hidden\.0\.(weight|bias)", key):
        return f"encoder.2.{m[1]}"
    if m := re.fullmatch(r"fc_(mean|log_var)\.(weight|bias)", key):
        return f"{'mean' if m[1] == 'mean' else 'logvar'}_head.{m[2]}"
    if m := re.fullmatch(rf"fc_alphas\.{conv}", key):
        return f"discrete_heads.{m[1]}.{m[2]}"
    if m := re.fullmatch(rf"latent_to_features\.{conv}", key):
        return key if m[1] in ("0", "2") else None
    return None


def convert_state_dict(
    state: dict[str, Any], model: JointVAE, preset: Preset, source: str
) -> dict[str, torch.Tensor]:
    """Official weights under jvae's names, after checking that they are exactly `model`'s (the preset's)."""
    expected = model.state_dict()
    layers = len(CONV_CHANNELS[preset.data.image_size])
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = official_key(str(key), layers)
        if target is None or target not in expected:
            raise OfficialImportError(f"{source}: unexpected key {key!r} for {_network(preset)}")
        if not isinstance(value, torch.Tensor) or value.shape != expected[target].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise OfficialImportError(
                f"{source}: {key} has shape {shape}, {_network(preset)} needs {tuple(expected[target].shape)}"
            )
        converted[target] = value.detach().to("cpu", torch.float32).clone()
    missing = [k for k in expected if k not in converted]
    if missing:
        raise OfficialImportError(f"{source}: no weights for {missing[0]} of {_network(preset)}")
    return converted


def _network(preset: Preset) -> str:
    m = preset.model
    return (
        f"the {preset.data.image_size}x{preset.data.image_size}x{preset.data.channels} network with "
        f"{m.continuous} continuous units and discrete {m.discrete}"
    )


def read_official_weights(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise OfficialImportError(
            f"{path.parent}: no model.pt; expected an official trained_models/<name>/ folder"
        )
    try:
        state = load_weights_only(path)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # a class or function to import and call: code, not weights
            raise OfficialImportError(
                f"{path}: refused: it holds Python objects that a safe load will not run"
            ) from None
        raise OfficialImportError(
            f"{path}: damaged or not a PyTorch state dict (not a pickle of tensors)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, IndexError) as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise OfficialImportError(f"{path}: damaged or not a PyTorch state dict ({detail})") from None
    if not isinstance(state, dict) or not state:
        raise OfficialImportError(f"{path}: not a state dict (a mapping of layer names to tensors)")
    return state


def _measure_kl(model: JointVAE, preset: Preset, data_path: str | None) -> dict[str, Any]:
    from jvae.base.errors import DataError, DataNotFoundError
    from jvae.data import open_dataset
    from jvae.modeling.latents import measure_unit_kl, measure_unit_kl_on_samples

    source = None
    if data_path is not None or preset.data.source == "generated":
        try:
            source = open_dataset(preset.data, data_path)
        except (DataNotFoundError, DataError):
            source = None
    if source is not None:
        kl, where = measure_unit_kl(model, source, torch.device("cpu")), "data sample (1024 images)"
    else:
        kl, where = measure_unit_kl_on_samples(model), "the model's own samples (1024)"
    return {**kl.as_dict(), "measured_on": where}


def import_official(
    folder: Path,
    out: Path,
    name: str | None = None,
    unit_names: dict[str, str] | None = None,
    measure_kl: bool = True,
    data_path: str | None = None,
) -> Checkpoint:
    """Write `out`, a jvae checkpoint of the official model in `folder`; returns what it wrote.

    The unit KLs that rank units in `units` and `traverse --all` are measured on the dataset when it is at
    hand (generated dSprites always is; others through `data_path`), else on the model's own samples.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OfficialImportError(f"{folder}: not a folder; give an official trained_models/<name>/ folder")
    name = name or folder.resolve().name
    specs = _read_specs(folder)
    preset = preset_from_specs(specs, name, str(folder / "specs.json"))
    weights_path = folder / "model.pt"
    model = build_model(preset)
    state = convert_state_dict(read_official_weights(weights_path), model, preset, str(weights_path))
    model.load_state_dict(state)
    model.eval()
    checkpoint = Checkpoint.new(f"official-{name}", preset, state)
    checkpoint.unit_kl = _measure_kl(model, preset, data_path) if measure_kl else None
    checkpoint.unit_names = dict(unit_names or {})
    checkpoint.imported = {
        "source": SOURCE,
        "name": name,
        "file": str(weights_path),
        "sha256": file_sha256(weights_path),
        "specs": specs,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    checkpoint.save(Path(out))
    return checkpoint
