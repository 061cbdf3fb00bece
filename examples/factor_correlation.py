"""Figure 8a: the azimuth of held-out chairs, read off the one latent unit that carries it (correlation).

    python examples/factor_correlation.py           # preset chairs, held-out chairs (every tenth), azimuth
    python examples/factor_correlation.py --quick   # generated dSprites, 32x32, 600 steps, factor posX

For every continuous unit it correlates the unit's mean with the true factor on 2000 images the model did not
train on (for chairs: data.split = "test"; for the quick variant dSprites draws are all seen in principle, so it
reads fresh random draws) and reports the best unit's Pearson and Spearman correlation. Uses the Python API.
Runtime: --quick about 1 minute on a 2-core CPU; full: 100 epochs of chairs, many hours on that CPU (GPU not
measured here). Outputs in $OUT (default examples/out/factor_correlation/): run/, correlation.json, scatter.png.
"""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import torch
from _common import jvae, sets, setup
from scipy.stats import pearsonr, spearmanr

from jvae.data import open_dataset
from jvae.modeling.checkpoint import load_checkpoint

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

quick, out = setup("factor_correlation", __doc__)
if quick:
    preset, factor = "quickstart", "posX"
    extra = sets(
        "data.image_size=32",
        'model.architecture="conv32"',
        "train.steps=600",
        "train.log_every=100",
        "loss.continuous_capacity.steps=500",
        "loss.discrete_capacity.steps=500",
    )
else:
    preset, factor, extra = "chairs", "azimuth", []
jvae("train", "--preset", preset, *extra, "--out", out / "run")

loaded = load_checkpoint(out / "run" / "ckpt.pt")
held_out = (
    loaded.preset.data.model_copy(update={"split": "test"}) if preset == "chairs" else loaded.preset.data
)
source = open_dataset(held_out)
factors = source.sample_factors(2000, np.random.RandomState(0))
column = source.factor_names.index(factor)
with torch.no_grad():
    means = torch.cat(
        [
            loaded.model.encode(source.observations(factors[i : i + 250], torch.device("cpu"))).mean
            for i in range(0, len(factors), 250)
        ]
    ).numpy()
truth = factors[:, column].astype(float)
scores = [
    abs(pearsonr(means[:, u], truth)[0]) if means[:, u].std() > 0 else 0.0 for u in range(means.shape[1])
]
best = int(np.argmax(scores))
result = {
    "factor": factor,
    "unit": best,
    "pearson": float(pearsonr(means[:, best], truth)[0]),
    "spearman": float(spearmanr(means[:, best], truth)[0]),
    "abs_pearson_per_unit": [float(s) for s in scores],
}
(out / "correlation.json").write_text(json.dumps(result, indent=2))
plt.figure(figsize=(4, 3))
plt.scatter(truth, means[:, best], s=3, alpha=0.4)
plt.xlabel(f"true {factor} (class index)")
plt.ylabel(f"z{best} mean")
plt.title(f"{factor}: Pearson {result['pearson']:.2f}")
plt.tight_layout()
plt.savefig(out / "scatter.png", dpi=120)
print(json.dumps({k: v for k, v in result.items() if k != "abs_pearson_per_unit"}))
