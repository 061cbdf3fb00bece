#!/usr/bin/env bash
# The MPI3D JointVAE run (Balgi & Dukkipati): JointVAE with dSprites' schedule on MPI3D, then every
# disentanglement metric against MPI3D's seven ground-truth factors and the traversals.
#
#   examples/mpi3d_jointvae.sh           # preset mpi3d (needs an MPI3D npz, see the manual: Datasets)
#   examples/mpi3d_jointvae.sh --quick   # the mpi3d preset's model on generated dSprites (shown in RGB), 32x32,
#                                        # 300 steps: MPI3D itself cannot be generated offline
#
# Runtime: --quick about 2 minutes on a 2-core CPU; full: 300000 steps, about 4-5 hours on that CPU (GPU not
# measured here). Outputs in $OUT (default examples/out/mpi3d_jointvae/): run/, report/ (report.json,
# report.md, kl_per_unit.png, mi_heatmap.png, top_units.gif).
source "$(dirname "$0")/_common.sh"
sets=()
if ((QUICK)); then
  sets=(--set data.dataset=dsprites --set 'data.source="generated"' --set data.image_size=32
        --set 'model.architecture="conv32"' --set train.steps=300 --set train.log_every=100
        --set loss.continuous_capacity.steps=250 --set loss.discrete_capacity.steps=250
        --set loss.continuous_capacity.gamma=3 --set loss.discrete_capacity.gamma=3)
fi
$JVAE train --preset mpi3d "${sets[@]}" --out "$OUT/run"
$JVAE evaluate "$OUT/run/ckpt.pt" --fast --out "$OUT/report"
