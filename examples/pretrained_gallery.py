"""The manual's pretrained gallery: what the JointVAE authors' released models do through jvae's commands.

    python examples/pretrained_gallery.py                       # fetches official:NAME on first use
    python examples/pretrained_gallery.py --official DIR        # offline: DIR holds trained_models/<name>/
    python examples/pretrained_gallery.py --quick               # no evaluate run, nothing refreshed in docs/gallery

Draws the MNIST units ranked by KL, the dSprites and chairs traversals, and the CelebA face edit of
docs/gallery/astronaut_face.png (NASA's portrait of Eileen Collins, public domain, as scikit-image
ships it: cropped and scaled like CelebA's aligned 148x148 face crop), and scores the dSprites model with
`jvae evaluate --fast`. Runtime about 2 minutes on a 2-core CPU (--quick: 30 s). Outputs go to $OUT
(default examples/out/pretrained_gallery/); the full run also refreshes docs/gallery/official_*, which README.md
and the manual show.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from _common import disentanglement_rows, jvae, report, table
from PIL import Image

HERE = Path(__file__).resolve().parent
GALLERY = HERE.parent / "docs" / "gallery"
FACE = GALLERY / "astronaut_face.png"
FACE_CROP = (138, 17, 313, 192)  # eyes level and 45 px apart in the 512x512 photograph, as in CelebA's crop
EDITS = [("azimuth", "-2"), ("azimuth", "+2"), ("age", "+2"), ("background_hue", "+2")]

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--official", type=Path, help="a folder of the official trained_models/<name>/ folders")
parser.add_argument("--quick", action="store_true", help="skip the dSprites evaluation; refresh nothing")
args = parser.parse_args()
out = Path(os.environ.get("OUT", "examples/out/pretrained_gallery"))
out.mkdir(parents=True, exist_ok=True)

if args.official is not None:  # put the released files where official:NAME looks before downloading
    cache = Path(os.environ.get("JVAE_CACHE", str(out / "cache")))
    os.environ["JVAE_CACHE"] = str(cache)
    for name in ("mnist", "fashion", "dsprites", "chairs", "celeba"):
        target = cache / "pretrained" / "official" / name
        target.mkdir(parents=True, exist_ok=True)
        for file_name in ("model.pt", "specs.json"):
            if not (target / file_name).is_file():
                shutil.copyfile(args.official / name / file_name, target / file_name)

if not FACE.is_file():
    try:
        from skimage import data
    except ImportError:
        sys.exit(f"{FACE} is missing; pip install scikit-image to cut it from its astronaut photograph")
    Image.fromarray(data.astronaut()).crop(FACE_CROP).resize((148, 148), Image.BICUBIC).save(FACE)

jvae(
    "traverse",
    "official:mnist",
    "--all",
    "--samples",
    "4",
    "--seed",
    "1",
    "--scale",
    "2",
    "--out",
    out / "mnist.gif",
)
jvae(
    "traverse",
    "official:dsprites",
    "--all",
    "--samples",
    "3",
    "--seed",
    "0",
    "--scale",
    "2",
    "--out",
    out / "dsprites.gif",
)
chairs = ["--unit", "azimuth", "--unit", "width"]
jvae(
    "traverse",
    "official:chairs",
    *chairs,
    "--samples",
    "4",
    "--seed",
    "3",
    "--scale",
    "2",
    "--out",
    out / "chairs.gif",
)

edited = []
for unit, change in EDITS:
    target = out / f"face_{unit}{change}.png"
    jvae("edit", FACE, "--ckpt", "official:celeba", f"--{unit}", change, "--out", target)
    edited.append(target)
side = 192  # every panel the same size, nearest-neighbour so the model's 64x64 pixels stay visible
panels = [Image.open(FACE).convert("RGB").resize((side, side), Image.BICUBIC)]
panels += [Image.open(p).convert("RGB").resize((side, side), Image.NEAREST) for p in edited]
strip = Image.new("RGB", (side * len(panels), side), "white")
for i, panel in enumerate(panels):
    strip.paste(panel, (i * side, 0))
strip.save(out / "celeba_face_edit.png")

outputs = {"mnist.gif": "official_mnist_units.gif", "dsprites.gif": "official_dsprites_traversals.gif"}
outputs |= {
    "chairs.gif": "official_chairs_azimuth.gif",
    "celeba_face_edit.png": "official_celeba_face_edit.png",
}
if args.quick:
    sys.exit(0)

jvae("evaluate", "official:dsprites", "--fast", "--seed", "0", "--out", out / "dsprites_report")
metrics = report(out / "dsprites_report")["metrics"]
text = table(["`jvae evaluate official:dsprites --fast`", "value"], disentanglement_rows(metrics)) + "\n"
print(text)
for source, name in outputs.items():
    shutil.copyfile(out / source, GALLERY / name)
(GALLERY / "official_dsprites_metrics.md").write_text(text)
rows = dict(disentanglement_rows(metrics))  # the released model's column of examples/gallery.py's table
(GALLERY / "official_dsprites_metrics.json").write_text(json.dumps(rows, indent=2) + "\n")
