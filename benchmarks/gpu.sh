#!/usr/bin/env bash
# jvae on a CUDA GPU in one call of under 8 minutes: every command, a short run of every kind, resume (single
# and stacked), one process under torchrun, `jvae bench` at batch 64, 256 and 1024, stacked training against
# single runs, and the explorer's decode latency. A summary table is printed last.
#   bash benchmarks/gpu-prepare.sh              (on a connected machine: wheels an offline GPU machine lacks)
#   bash benchmarks/gpu.sh                      (on the GPU machine, from the project's root)
#   DEVICE=cpu STEPS_SCALE=0.02 bash benchmarks/gpu.sh   (a dry run on a CPU)
# Logs and summary.txt go to $OUT (default gpu-out/).
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}; SCALE=${STEPS_SCALE:-1}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || { echo "wheel install failed"; exit 1; }
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
jv() { python3 -m jvae "$@"; }
steps() { python3 -c "print(max(2, int($1 * $SCALE)))"; }
S=$OUT/summary.txt; : > "$S"; T=$OUT/table.txt; : > "$T"
say() { echo "$*" | tee -a "$S"; }
row() { printf '%-44s %s\n' "$1" "$2" >> "$T"; }
step() {  # step NAME COMMAND...: runs it, logs to $OUT/NAME.log, records ok/FAIL and seconds
  local name=$1; shift; local t0; t0=$(date +%s.%N)
  "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  local dt; dt=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
  if [ $rc -eq 0 ]; then say "ok    $name (${dt}s)"; row "$name" "ok (${dt}s)"
  else say "FAIL  $name rc=$rc (${dt}s): $(grep -v '^\s*$' "$OUT/$name.log" | tail -1 | cut -c1-160)"; row "$name" "FAIL rc=$rc"; fi
  return $rc
}
same_weights() {  # same_weights LABEL A.pt B.pt: largest weight difference between two checkpoints
  python3 - "$@" <<'PY' | tee -a "$S"
import sys, torch
label, a, b = sys.argv[1:4]
try:
    x, y = (torch.load(p, weights_only=True, map_location="cpu")["model"] for p in (a, b))
    worst = max(((x[k].float() - y[k].float()).abs().max().item() for k in x), default=0.0)
    print(f"      {label}: largest weight difference {worst:.3g} ({'bit-identical' if worst == 0 else 'not identical'})")
except Exception as e:
    print(f"      {label}: comparison failed: {e}")
PY
}
bench_line() {  # bench_line LOG LABEL: the figures of a `jvae bench --json` log
  python3 - "$@" <<'PY'
import json, sys
try:
    text = open(sys.argv[1]).read(); r = json.loads(text[text.index("{"):])
    if "stacked" in r:
        print(f"stacked {r['stacked']['median']:.0f} img/s in all, single {r['single']['median']:.0f}, reference "
              f"{r['baseline']['median']:.0f}; stacked/single {r['stacked_over_single']:.2f}x")
    else:
        print(f"jvae {r['train']['median']:.0f} img/s, reference {r['baseline']['median']:.0f}, ratio {r['ratio']:.2f}x")
except Exception as e:
    print(f"no figures ({e})")
PY
}
say "== $(date -u +%FT%TZ) $(nvidia-smi -L 2>/dev/null | head -1)"
say "== $(python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())')"
step import jv presets || { say "jvae does not import: see $OUT/import.log"; exit 1; }
R=$OUT/runs; rm -rf "$R"; mkdir -p "$R"
GEN='data.source="generated"'

# every command on one trained model
step train-quickstart jv train --preset quickstart --device "$DEVICE" --set train.steps="$(steps 2500)" --out "$R/qs"
C=$R/qs/ckpt.pt
step units jv units "$C"
step traverse jv traverse "$C" --all --out "$OUT/traverse.gif" --device "$DEVICE"
step sample jv sample "$C" --per-category --out "$OUT/sample.png" --device "$DEVICE"
step encode jv encode "$C" dsprites --limit 20000 --out "$R/codes.npz" --device "$DEVICE"
python3 -c "
from PIL import Image; import numpy as np
im = np.zeros((64, 64), np.uint8); yy, xx = np.mgrid[:64, :64]; im[((xx-38)/9.)**2 + ((yy-27)/5.)**2 <= 1] = 255
Image.fromarray(im).save('$R/in.png')"
step edit jv edit "$R/in.png" --ckpt "$C" --unit 0=+2 --out "$R/edited.png" --device "$DEVICE"
step evaluate-fast jv evaluate "$C" --fast --out "$R/report" --device "$DEVICE"
step plot jv plot "$R/qs" --out "$OUT/curves.png"

# resume, single and stacked, against uninterrupted runs
step resume-full jv train --preset quickstart --device "$DEVICE" --set train.steps="$(steps 200)" --out "$R/full"
step resume-part jv train --preset quickstart --device "$DEVICE" --set train.steps="$(steps 100)" --out "$R/part"
step resume-rest jv train --resume "$R/part" --set train.steps="$(steps 200)"
same_weights "resume of a single run vs uninterrupted" "$R/full/ckpt.pt" "$R/part/ckpt.pt"
step stack-full jv train --preset quickstart --device "$DEVICE" --seeds 0-3 --set train.steps="$(steps 200)" --out "$R/stack-full"
step stack-part jv train --preset quickstart --device "$DEVICE" --seeds 0-3 --set train.steps="$(steps 100)" --out "$R/stack-part"
step stack-rest jv train --resume "$R/stack-part" --set train.steps="$(steps 200)"
same_weights "resume of a stack vs uninterrupted" "$R/stack-full/seed-2/ckpt.pt" "$R/stack-part/seed-2/ckpt.pt"
step stack-alone jv train --preset quickstart --device "$DEVICE" --set train.seed=2 --set train.steps="$(steps 200)" --out "$R/seed-2-alone"
same_weights "stacked model (grouped convolutions) vs the same model alone" "$R/stack-full/seed-2/ckpt.pt" "$R/seed-2-alone/ckpt.pt"

# the 2018 recipe (mnist preset's fields) on the GPU: resume exactly, and bf16 against fp32 loss curves
RECIPE="--set loss.objective_scale=pixel --set train.adam=pytorch-0.4 --set model.init=pytorch-0.4 --set train.last_batch=keep"
step recipe-full jv train --preset digits --device "$DEVICE" $RECIPE --set train.precision=fp32 --set train.steps="$(steps 1200)" --set train.log_every=50 --out "$R/recipe-fp32"
step recipe-part jv train --preset digits --device "$DEVICE" $RECIPE --set train.precision=fp32 --set train.steps="$(steps 600)" --set train.log_every=50 --out "$R/recipe-part"
step recipe-rest jv train --resume "$R/recipe-part" --set train.steps="$(steps 1200)"
same_weights "2018 recipe: resume vs uninterrupted" "$R/recipe-fp32/ckpt.pt" "$R/recipe-part/ckpt.pt"
step recipe-bf16 jv train --preset digits --device "$DEVICE" $RECIPE --set train.precision=bf16 --set train.steps="$(steps 1200)" --set train.log_every=50 --out "$R/recipe-bf16"
row "  recipe loss, bf16 vs fp32" "$(python3 -c "
import json, sys
def losses(path):
    return {r['step']: r['loss'] for r in map(json.loads, open(path)) if r.get('split', 'train') == 'train'}
a, b = losses('$R/recipe-fp32/metrics.jsonl'), losses('$R/recipe-bf16/metrics.jsonl')
gaps = [abs(a[k] - b[k]) / abs(a[k]) for k in sorted(a) if k in b]
last = max(k for k in a if k in b)
print(f'mean rel gap {sum(gaps) / len(gaps):.2e}, at step {last}: fp32 {a[last]:.2f} bf16 {b[last]:.2f}')
" 2>&1 | tail -1)"

# a short run of every kind
for p in dsprites-vae dsprites-beta-vae dsprites-cc-beta-vae dsprites-beta-tcvae dsprites-factor-vae \
  dsprites-grouped-vae dsprites-dip-vae-i dsprites-dip-vae-ii; do
  step "kind-$p" jv train --preset "$p" --device "$DEVICE" --set "$GEN" --set train.steps="$(steps 300)" --out "$R/$p"
done
step kind-digits-class-conditional jv train --preset digits-class-conditional --device "$DEVICE" --set train.steps="$(steps 300)" --out "$R/cc"
step torchrun-1 python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m jvae train --preset quickstart \
  --device "$DEVICE" --set train.steps="$(steps 300)" --out "$R/ddp"

# the step never waits on the GPU (synchronisation debug mode)
if [ "$DEVICE" != "cpu" ]; then
  step cuda-sync python3 benchmarks/cuda_sync_check.py --steps "$(steps 20)"
  while read -r line; do row "  $line" ""; done < <(grep -E "host sync|synchronises" "$OUT/cuda-sync.log")
fi

# throughput
for b in 64 256 1024; do
  step "bench-b$b" jv bench --preset dsprites --set "$GEN" --device "$DEVICE" --batch-size "$b" --steps "$(steps 200)" --repeats 5 --warmup 10 --no-metrics --json
  row "  dsprites batch $b" "$(bench_line "$OUT/bench-b$b.log")"
done
for precision in bf16 mixed; do  # the two bfloat16 settings against fp32's figure above, at batch 256
  step "bench-b256-$precision" jv bench --preset dsprites --set "$GEN" --set "train.precision=\"$precision\"" --device "$DEVICE" --batch-size 256 --steps "$(steps 200)" --repeats 5 --warmup 10 --no-metrics --json
  row "  dsprites batch 256, $precision" "$(bench_line "$OUT/bench-b256-$precision.log")"
done
step bench-stack16 jv bench --preset dsprites --set "$GEN" --device "$DEVICE" --stack 16 --steps "$(steps 100)" --repeats 3 --warmup 5 --json
row "  dsprites, 16 stacked at batch 64" "$(bench_line "$OUT/bench-stack16.log")"
step bench-digits-stack8 jv bench --preset digits --device "$DEVICE" --stack 8 --steps "$(steps 100)" --repeats 3 --warmup 5 --json
row "  digits, 8 stacked at batch 64" "$(bench_line "$OUT/bench-digits-stack8.log")"
if python3 -c "import starlette, uvicorn" 2>/dev/null; then
  step explore-latency python3 benchmarks/explore_latency.py --device "$DEVICE"
  row "  explore decode round trip" "$(grep -i 'median' "$OUT/explore-latency.log" | tail -1 | cut -c1-80)"
else
  row "explore-latency" "skipped (no starlette/uvicorn: run benchmarks/gpu-prepare.sh)"
fi
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1
say "== done $(date -u +%FT%TZ); failures: $(grep -c '^FAIL' "$S")"
echo; echo "summary ($DEVICE)"; cat "$T"; echo "targets: one dSprites run at batch 64 >= 110000 img/s; 16 stacked >= 500000 img/s in all"
