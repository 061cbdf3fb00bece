"""The README's gallery: jvae's own outputs for the quickstart preset, regenerated from scratch.

    python examples/gallery.py           # jvae train --preset quickstart (2500 steps, 64x64 generated dSprites)
    python examples/gallery.py --quick   # 300 steps at 32x32: a check that the pipeline works, not for the README

Runtime: about 5 minutes on a 2-core CPU for the full run plus 1.5 minutes for `evaluate --fast`; --quick
about 1 minute. Outputs: the run and report in $OUT (default examples/out/gallery/); the full run also
refreshes examples/gallery/ (quickstart_traversals.gif, quickstart_metrics.md) and README's gallery block.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from _common import disentanglement_rows, jvae, report, sets, setup, table

quick, out = setup("gallery", __doc__)
extra = (
    sets("data.image_size=32", 'model.architecture="conv32"', "train.steps=300", "train.log_every=100")
    if quick
    else []
)
jvae("train", "--preset", "quickstart", *extra, "--out", out / "run")
jvae("evaluate", out / "run" / "ckpt.pt", "--fast", "--out", out / "report")

metrics = report(out / "report")["metrics"]
rows = disentanglement_rows(metrics) + [
    ["held-out reconstruction (nats)", metrics["elbo"]["reconstruction_mode"]],
    ["held-out KL (nats)", metrics["elbo"]["kl_continuous"] + metrics["elbo"]["kl_discrete"]],
]
text = table(["`jvae evaluate --fast` on quickstart", "value"], rows) + "\n"
(out / "quickstart_metrics.md").write_text(text)
print(text)
if not quick:
    gallery = Path(__file__).resolve().parent / "gallery"
    gallery.mkdir(exist_ok=True)
    shutil.copyfile(out / "run" / "traversals.gif", gallery / "quickstart_traversals.gif")
    (gallery / "quickstart_metrics.md").write_text(text)
    readme = Path(__file__).resolve().parent.parent / "README.md"
    subprocess.run([sys.executable, "-m", "jvae_cli.cli.reference", str(readme)], check=True)
