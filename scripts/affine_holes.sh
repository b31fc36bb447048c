#!/usr/bin/env bash
# Affine-coupling (RealNVP) flows trained by FORT leave "holes": held-out points that the inverse
# sends far out in noise space, with huge NLL. This script measures the effect and what reduces
# it: one data set, the same architecture, MLE against FORT-OT / FORT-CNF with the log-det
# regulariser, the forward-backward regulariser, target noise and the hybrid beta*NLL term.
# Prints one table (results in $OUT/results.md). Takes about 7 minutes on 2 cores.
#
# Environment: DATASET (default 8gaussians), N_TRAIN, N_TEST, STEPS, WIDTH, OUT, FORT (a built
# `fort` binary; default build/examples/fort, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATASET:=8gaussians}" "${N_TRAIN:=10000}" "${N_TEST:=5000}" "${STEPS:=4000}" "${WIDTH:=128}"
: "${OUT:=out/affine-holes}" "${FORT:=build/examples/fort}"
if [ ! -x "$FORT" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFORT_BUILD_EXAMPLES=ON > /dev/null
  cmake --build build -j "${JOBS:-2}" --target fort_cli > /dev/null
fi
mkdir -p "$OUT"
"$FORT" data --name "$DATASET" --n "$N_TRAIN" --seed 1 --out "$OUT/train.npy"
"$FORT" data --name "$DATASET" --n "$N_TEST" --seed 2 --out "$OUT/test.npy"
common=(--arch affine --layers 8 --width "$WIDTH" --depth 2 --steps "$STEPS" --batch 256 --quiet)
cnf=(--targets cnf --teacher-steps "$STEPS" --teacher-width "$WIDTH")

RESULTS="$OUT/eval.txt"
: > "$RESULTS"
run() {  # run LABEL ARGS...: train, evaluate, append one line
  local label=$1; shift
  local start=$SECONDS
  "$FORT" train --data "$OUT/train.npy" --out "$OUT/$label.safetensors" "${common[@]}" "$@" 2> "$OUT/$label.log"
  "$FORT" eval --model "$OUT/$label.safetensors" --data "$OUT/test.npy" --label "$label train_s=$((SECONDS - start))" \
    | tee -a "$RESULTS"
}
run mle                    --loss mle
run ot                     --loss fort --targets ot
run ot-logdet-1e-5         --loss fort --targets ot --lambda-logdet 1e-5
run ot-logdet-1e-2         --loss fort --targets ot --lambda-logdet 1e-2
run ot-fb-1e-2             --loss fort --targets ot --lambda-fb 1e-2
run ot-fb-1                --loss fort --targets ot --lambda-fb 1
run ot-noise-0.05          --loss fort --targets ot --target-noise 0.05
run ot-noise-0.2           --loss fort --targets ot --target-noise 0.2
run ot-beta-0.01           --loss fort --targets ot --beta-nll 0.01
run ot-beta-0.1            --loss fort --targets ot --beta-nll 0.1
run cnf                    --loss fort "${cnf[@]}"
run cnf-beta-0.1           --loss fort "${cnf[@]}" --beta-nll 0.1

{
  echo "| method | mean NLL | median NLL | max NLL | holes (NLL > 20) | max round-trip error | train s |"
  echo "|---|---|---|---|---|---|---|"
  awk '{
    m=$1; t=$2; sub("train_s=","",t); sub(":","",t);
    for (i=3;i<=NF;i++) { split($i,kv,"="); if (kv[1]=="mean_nll") mean=kv[2]; if (kv[1]=="median_nll") med=kv[2];
      if (kv[1]=="max_nll") mx=kv[2]; if (kv[1] ~ /^holes/) holes=kv[2]; if (kv[1]=="max_roundtrip_err") rt=kv[2]; }
    printf "| %s | %s | %s | %s | %s | %s | %s |\n", m, mean, med, mx, holes, rt, t }' "$RESULTS"
} > "$OUT/results.md"
echo
echo "== affine coupling on $DATASET (8 layers, MLP 2x$WIDTH, $STEPS steps, $N_TRAIN train / $N_TEST held out; NLL in nats)"
cat "$OUT/results.md"
