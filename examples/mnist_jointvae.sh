#!/usr/bin/env bash
# JointVAE on MNIST: figures 2 and 7b (traversals of every unit ranked by KL), figure 4a (samples, one row per
# value of the discrete latent) and section 4.3 (digit accuracy of the discrete latent, 88.7% in the paper).
#
#   examples/mnist_jointvae.sh            # the paper's setting: preset mnist (100 epochs; needs MNIST, see the manual: Datasets)
#   examples/mnist_jointvae.sh --quick    # preset digits for 300 steps: scikit-learn's digits, offline
#
# Runtime: --quick about 1 minute on a 2-core CPU. Full: 100 epochs = 94k steps of 64 images, about 1 hour at
# the ~1500-2000 images/s jvae trains 32x32 images on a 2-core CPU; on a GPU not measured here.
# Outputs in $OUT (default examples/out/mnist_jointvae/): run/ (checkpoint, metrics, traversals.gif),
# traversals.png, per_digit.png, report/ (report.json with cluster_accuracy and linear_probe).
source "$(dirname "$0")/_common.sh"
if ((QUICK)); then
  preset=digits; sets=(--set train.steps=300 --set train.log_every=50); split=()
else
  preset=mnist; sets=(); split=(--split test)  # the paper's figure is on the 10000 test images
fi

say "train $preset"
$JVAE train --preset "$preset" "${sets[@]}" --out "$OUT/run"
say "figure 2 / 7b: every unit, ranked by KL"
$JVAE traverse "$OUT/run/ckpt.pt" --all --samples 4 --out "$OUT/traversals.png" --scale 2
say "figure 4a: one row per category of the discrete latent"
$JVAE sample "$OUT/run/ckpt.pt" --per-category --variable d0 --n 8 --out "$OUT/per_digit.png" --scale 2
say "section 4.3: accuracy of the discrete latent as a digit classifier"
$JVAE evaluate "$OUT/run/ckpt.pt" "${split[@]}" --metrics cluster_accuracy --metrics linear_probe --out "$OUT/report"
