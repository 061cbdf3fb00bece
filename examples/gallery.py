"""The manual's gallery: jvae's own outputs for the quickstart preset, regenerated from scratch.

    python examples/gallery.py           # jvae train --preset quickstart (64x64 generated dSprites)
    python examples/gallery.py --quick   # 300 steps at 32x32: a check that the pipeline works, not for the manual

The table puts seed 0's `jvae evaluate --fast` next to the median over seeds of
examples/quickstart_seeds.py (read from $SEEDS, default examples/out/quickstart_seeds/seeds.json, when it
exists) and next to the released dSprites model (docs/gallery/official_dsprites_metrics.json, written
by examples/pretrained_gallery.py).

RUN=examples/out/quickstart_seeds/seed0 uses that finished quickstart run (and its report) instead of
training one.

Runtime: about 7 minutes on a 2-core CPU for the full run plus 1.5 minutes for `evaluate --fast`; --quick
about 1 minute. Outputs: the run and report in $OUT (default examples/out/gallery/); the full run also
refreshes docs/gallery/ (quickstart_traversals.gif, quickstart_metrics.md), which README.md and the
manual's results page show.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

from _common import disentanglement_rows, jvae, report, sets, setup, table

quick, out = setup("gallery", __doc__)
extra = (
    sets("data.image_size=32", 'model.architecture="conv32"', "train.steps=300", "train.log_every=100")
    if quick
    else []
)
run = Path(os.environ["RUN"]) if os.environ.get("RUN") else out / "run"
if not os.environ.get("RUN"):
    jvae("train", "--preset", "quickstart", *extra, "--out", run)
scored = run / "report" if (run / "report" / "report.json").is_file() else out / "report"
if scored == out / "report":
    jvae("evaluate", run / "ckpt.pt", "--fast", "--seed", 0, "--out", scored)

metrics = report(scored)["metrics"]
rows = disentanglement_rows(metrics) + [
    ["held-out reconstruction (nats)", metrics["elbo"]["reconstruction_mode"]],
    ["held-out KL (nats)", metrics["elbo"]["kl_continuous"] + metrics["elbo"]["kl_discrete"]],
]
header = ["`jvae evaluate --fast`", "quickstart, seed 0"]
seeds_file = Path(os.environ.get("SEEDS", "examples/out/quickstart_seeds/seeds.json"))
if seeds_file.is_file() and not quick:
    seeds = json.loads(seeds_file.read_text())["seeds"]
    header.append(f"quickstart, median of seeds 0-{len(seeds) - 1}")
    for row in rows:
        values = [s[row[0]] for s in seeds if row[0] in s]
        row.append(statistics.median(values) if values else "")
GALLERY = Path(__file__).resolve().parent.parent / "docs" / "gallery"
released = GALLERY / "official_dsprites_metrics.json"
if released.is_file():
    official = json.loads(released.read_text())
    header.append("released dSprites model (300000 GPU steps)")
    for row in rows:
        row.append(official.get(row[0], ""))
text = table(header, rows) + "\n"
(out / "quickstart_metrics.md").write_text(text)
print(text)
if not quick:
    GALLERY.mkdir(exist_ok=True)
    shutil.copyfile(run / "traversals.gif", GALLERY / "quickstart_traversals.gif")
    (GALLERY / "quickstart_metrics.md").write_text(text)
