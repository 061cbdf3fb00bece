#!/usr/bin/env bash
# Figure 3: traversals of every latent unit on MNIST for JointVAE, beta-VAE and CC beta-VAE, trained on the
# same data with the same network. Only JointVAE separates digit type (its discrete latent) from style.
#
#   examples/baselines_traversals.sh          # presets mnist, mnist-beta-vae, mnist-cc-beta-vae (needs MNIST)
#   examples/baselines_traversals.sh --quick  # the same three models on scikit-learn's digits, 300 steps each
#
# Runtime: --quick about 2 minutes on a 2-core CPU; full about 1 hour per model on that CPU (GPU not measured).
# Outputs in $OUT (default examples/out/baselines_traversals/): <model>/ runs and <model>.png traversal grids.
source "$(dirname "$0")/_common.sh"
for model in jointvae beta-vae cc-beta-vae; do
  preset=$([[ $model == jointvae ]] && echo mnist || echo "mnist-$model")
  sets=()
  if ((QUICK)); then
    sets=(--set data.dataset=digits --set train.steps=300 --set train.log_every=50)
    [[ $model == cc-beta-vae ]] && sets+=(--set loss.continuous_capacity.steps=250)
    [[ $model == jointvae ]] && sets+=(--set loss.continuous_capacity.steps=250 --set loss.discrete_capacity.steps=250)
  fi
  say "train $model ($preset)"
  $JVAE train --preset "$preset" "${sets[@]}" --out "$OUT/$model"
  $JVAE traverse "$OUT/$model/ckpt.pt" --all --out "$OUT/$model.png" --scale 2
done
echo "traversal grids: $OUT/jointvae.png $OUT/beta-vae.png $OUT/cc-beta-vae.png"
