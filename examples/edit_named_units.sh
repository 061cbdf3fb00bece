#!/usr/bin/env bash
# Figure 8b: edit an image by moving named latent units with `jvae edit`.
#
#   FACE=face.jpg UNIT=5 NAME=smile examples/edit_named_units.sh   # preset celeba; you pick the unit from
#                                                                  # the run's traversals.gif and name it
#   examples/edit_named_units.sh --quick      # generated dSprites 32x32, 800 steps; evaluate --name-units
#                                             # names units after the factors they carry, then an edit
#                                             # moves a rendered sprite with --<factor> +2
#
# Runtime: --quick about 2 minutes on a 2-core CPU; full: 100 epochs of CelebA, many hours on that CPU (GPU
# not measured here). Outputs in $OUT (default examples/out/edit_named_units/): run/, input.png,
# input.edited.png, sweep.gif.
source "$(dirname "$0")/_common.sh"
if ((QUICK)); then
  $JVAE train --preset quickstart --set data.image_size=32 --set 'model.architecture="conv32"' \
    --set train.steps=800 --set train.log_every=200 --set loss.continuous_capacity.steps=600 \
    --set loss.discrete_capacity.steps=600 --out "$OUT/run"
  say "name units after the dSprites factors they carry"
  $JVAE evaluate "$OUT/run/ckpt.pt" --metrics mig --fast --name-units --out "$OUT/report"
  $JVAE units "$OUT/run/ckpt.pt"
  name=$($JVAE units "$OUT/run/ckpt.pt" --json | python3 -c \
    'import json,sys; names=[u["name"] for u in json.load(sys.stdin)["units"] if u.get("name")]; print(names[0] if names else "")')
  python3 - "$OUT/input.png" <<'PY'
import sys, torch
from PIL import Image
from jvae.data.dsprites import render
sprite = render(torch.tensor([[1, 5, 0, 10, 16]]), torch.device("cpu"))[0, 0]  # an ellipse left of centre
Image.fromarray((sprite * 255).byte().numpy()).save(sys.argv[1])
PY
  image="$OUT/input.png"
  if [[ -z "$name" ]]; then echo "no unit carried a factor clearly enough to be named; editing unit 0" >&2; edit=(--unit 0=+2); else edit=("--$name" +2); fi
else
  : "${FACE:?set FACE=path/to/face.jpg}" "${UNIT:?set UNIT to the unit you chose}" "${NAME:?set NAME}"
  $JVAE train --preset celeba --out "$OUT/run"
  $JVAE units "$OUT/run/ckpt.pt" --name "$UNIT=$NAME"
  cp "$FACE" "$OUT/input${FACE##*.}" && image="$OUT/input${FACE##*.}"
  edit=("--$NAME" +2)
fi
$JVAE edit "$image" --ckpt "$OUT/run/ckpt.pt" "${edit[@]}" --out "$OUT/input.edited.png" --sweep "$OUT/sweep.gif"
