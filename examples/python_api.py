"""The Python API: load a checkpoint, encode a folder of images, move one latent unit, decode the result.

    python examples/python_api.py CKPT FOLDER     # any jvae checkpoint and a folder of images
    python examples/python_api.py --quick         # trains a tiny model on generated dSprites (about 30 s on a
                                                  # 2-core CPU) and writes a folder of sprites to encode

Runtime: seconds for a folder of a few hundred images on a CPU; --quick about 30 s on a 2-core CPU.
Outputs in $OUT (default examples/out/python_api/): codes.npz (the folder's codes), edited/ (each image with
its highest-KL unit moved by +2, decoded), and with --quick the run and the input folder.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jvae.base.images import image_files, load_image
from jvae.base.media import to_uint8
from jvae.modeling.checkpoint import load_checkpoint
from jvae.modeling.latents import Unit, UnitKL, apply_changes, parse_change, ranked_units

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("ckpt", nargs="?", type=Path)
parser.add_argument("folder", nargs="?", type=Path)
parser.add_argument("--quick", action="store_true")
args = parser.parse_args()
out = Path(os.environ.get("OUT", "examples/out/python_api"))
out.mkdir(parents=True, exist_ok=True)

if args.quick:  # a tiny model and a folder of inputs, both made here
    from jvae.data.dsprites import render
    from jvae.modeling.presets import load_preset
    from jvae.training import trainer

    _, preset = load_preset(
        "quickstart",
        ["data.image_size=32", 'model.architecture="conv32"', "train.steps=200", "train.log_every=100"],
    )
    trainer.train(preset, "quickstart", out / "run")
    args.ckpt, args.folder = out / "run" / "ckpt.pt", out / "inputs"
    args.folder.mkdir(exist_ok=True)
    for i, factors in enumerate([[0, 5, 0, 8, 8], [1, 3, 10, 16, 20], [2, 4, 20, 24, 12]]):
        sprite = render(torch.tensor([factors]), torch.device("cpu"))[0, 0]
        Image.fromarray((sprite * 255).byte().numpy()).save(args.folder / f"sprite{i}.png")
elif args.ckpt is None or args.folder is None:
    parser.error("give CKPT and FOLDER, or --quick")

loaded = load_checkpoint(args.ckpt)  # weights_only load; refuses anything that is not a jvae checkpoint
model, data = loaded.model, loaded.preset.data
paths = image_files([args.folder])
images = torch.stack([load_image(p, data.channels, data.image_size) for p in paths])  # (N, C, H, W)

with torch.no_grad():
    posterior = model.encode(images)
    codes = posterior.mode()  # means and one-hot argmax of each discrete variable
np.savez(
    out / "codes.npz",
    path=np.array([str(p) for p in paths]),
    mean=posterior.mean.numpy(),
    logvar=posterior.logvar.numpy(),
)

stored = loaded.unit_kl
unit = (
    ranked_units(model, UnitKL(stored["continuous"], stored["discrete"]))[0]
    if stored
    else Unit("continuous", 0)
)
edited_codes = apply_changes(codes, model, [parse_change(unit, "+2", model)])
with torch.no_grad():
    decoded = to_uint8(model.decode(edited_codes))  # (N, H, W, 3) uint8
(out / "edited").mkdir(exist_ok=True)
for path, picture in zip(paths, decoded):
    Image.fromarray(picture).save(out / "edited" / f"{path.stem}.png")
print(
    f"encoded {len(paths)} images to {out / 'codes.npz'}; moved unit z{unit.index} by +2 into {out / 'edited'}"
)
