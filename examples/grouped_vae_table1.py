"""Grouped-VAE, table 1: MIG and reconstruction error of Grouped-VAE against beta-VAE on dSprites over seeds,
with the paper's network (MLP 1200-1200 ReLU encoder, 1200x3 tanh decoder) and 6 latents.

    python examples/grouped_vae_table1.py           # dsprites-grouped-vae against the same net as beta-VAE
                                                    # (beta 1), 300000 steps, 5 seeds (needs dSprites)
    python examples/grouped_vae_table1.py --quick   # generated dSprites at 32x32, hidden 256, 400 steps, 2 seeds

Reconstruction is the per-image BCE of the decoded posterior mode on 2048 held-out images (evaluate's elbo).
Runtime: --quick about 3 minutes on a 2-core CPU; full: several hours per run on that CPU (GPU not measured
here). Outputs in $OUT (default examples/out/grouped_vae_table1/): runs, reports, table1.md.
"""

from __future__ import annotations

import statistics

from _common import evaluate, jvae, sets, setup, table

quick, out = setup("grouped_vae_table1", __doc__)
seeds = range(2) if quick else range(5)
small = (
    sets(
        'data.source="generated"',
        "data.image_size=32",
        "model.hidden=256",
        "train.steps=400",
        "train.log_every=100",
        "train.lr=1e-3",
    )
    if quick
    else []
)
same_net = sets(
    'model.architecture="mlp"', "model.continuous=6", "model.hidden=1200", "loss.beta=1.0", "train.lr=1e-4"
)
models = {"Grouped-VAE": ("dsprites-grouped-vae", []), "beta-VAE": ("dsprites-beta-vae", same_net)}
rows, means = [], []
for label, (preset, extra) in models.items():
    mig, recon = [], []
    for seed in seeds:
        run = out / "runs" / f"{preset}-s{seed}"
        jvae("train", "--preset", preset, *extra, *small, "--set", f"train.seed={seed}", "--out", run)
        folder = out / "reports" / run.name
        metrics = evaluate(run, folder, seed, "mig", "elbo")
        mig.append(metrics["mig"])
        recon.append(metrics["elbo"]["reconstruction_mode"])
        rows.append([label, seed, metrics["mig"], metrics["elbo"]["reconstruction_mode"]])
    means.append([label, statistics.mean(mig), statistics.pstdev(mig), statistics.mean(recon)])

text = (
    table(["model", "seed", "MIG", "reconstruction"], rows)
    + "\n\n"
    + table(["model", "MIG mean", "MIG std", "reconstruction mean"], means)
    + "\n"
)
(out / "table1.md").write_text(text)
print(text)
