#!/usr/bin/env bash
# Toy job: FORT against maximum likelihood on 2-D data, end to end with the `fort` command.
#
# For each data set (two moons, eight Gaussians, checkerboard) it writes training and held-out
# points, trains the same spline-coupling flow three ways — MLE, FORT with exact OT targets and
# FORT with CNF targets (a flow-matching teacher, also evaluated) — evaluates held-out NLL and
# prints one table. Results go to out/2d/ (results.md, models, samples, and samples.png when
# matplotlib is available).
#
# Environment: FORT_SMOKE=1 runs a tiny version (CI); JOBS sets build parallelism;
# STEPS, TEACHER_STEPS, N_TRAIN, N_TEST, ARCH, DATASETS override the defaults below;
# TEACHER (extra `fort train` options for the CNF teacher, e.g. "--teacher-batch 1024") and
# EXTRA (options for every training run) are passed through; METHODS picks a subset of
# "mle fort-ot fort-cnf".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "${FORT_SMOKE:-0}" = 1 ]; then
  : "${DATASETS:=moons}" "${N_TRAIN:=1000}" "${N_TEST:=500}" "${STEPS:=60}" "${TEACHER_STEPS:=60}"
  : "${WIDTH:=32}" "${OUT:=out/2d-smoke}"
fi
: "${DATASETS:=moons 8gaussians checkerboard}" "${N_TRAIN:=20000}" "${N_TEST:=5000}"
: "${STEPS:=8000}" "${TEACHER_STEPS:=8000}" "${WIDTH:=128}" "${ARCH:=spline}" "${OUT:=out/2d}" "${EXTRA:=}"
: "${TEACHER:=}"

need_apt=""
command -v cmake > /dev/null || need_apt="$need_apt cmake build-essential"
[ -f /usr/include/eigen3/Eigen/Core ] || need_apt="$need_apt libeigen3-dev"
if [ "${FORT_SMOKE:-0}" != 1 ] && ! /usr/bin/python3 -c "import matplotlib" 2> /dev/null; then
  need_apt="$need_apt python3-matplotlib"
fi
if [ -n "$need_apt" ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  echo "== installing:$need_apt"
  $SUDO apt-get update -q > /dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need_apt > /dev/null \
    || echo "warning: could not install$need_apt (continuing; the plot may be skipped)"
fi

echo "== building the fort command"
# Tests are not needed here (and Catch2 may be absent): scripts/test.sh switches them back on.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFORT_BUILD_EXAMPLES=ON -DFORT_BUILD_TESTS=OFF > /dev/null
cmake --build build -j "${JOBS:-2}" --target fort_cli > /dev/null
FORT="$ROOT/build/examples/fort"

mkdir -p "$OUT"
RESULTS="$OUT/eval.txt"
: > "$RESULTS"
common=(--arch "$ARCH" --layers 8 --width "$WIDTH" --depth 2 --steps "$STEPS" --batch 256 --ot-exact-max 20000 --quiet $EXTRA)
for ds in $DATASETS; do
  echo "== $ds: data ($N_TRAIN train, $N_TEST held out)"
  "$FORT" data --name "$ds" --n "$N_TRAIN" --seed 1 --out "$OUT/$ds-train.npy"
  "$FORT" data --name "$ds" --n "$N_TEST" --seed 2 --out "$OUT/$ds-test.npy"
  for method in ${METHODS:-mle fort-ot fort-cnf}; do
    model="$OUT/$ds-$method.safetensors"
    start=$SECONDS
    case $method in
      mle) "$FORT" train --data "$OUT/$ds-train.npy" --out "$model" --loss mle "${common[@]}" ;;
      fort-ot) "$FORT" train --data "$OUT/$ds-train.npy" --out "$model" --loss fort --targets ot "${common[@]}" ;;
      fort-cnf) "$FORT" train --data "$OUT/$ds-train.npy" --out "$model" --loss fort --targets cnf \
        --teacher-steps "$TEACHER_STEPS" --teacher-width "$WIDTH" --teacher-out "$OUT/$ds-teacher.safetensors" $TEACHER "${common[@]}" ;;
    esac
    secs=$((SECONDS - start))
    "$FORT" eval --model "$model" --data "$OUT/$ds-test.npy" --label "$ds $method train_s=$secs" | tee -a "$RESULTS"
    "$FORT" sample --model "$model" --n "$N_TEST" --seed 3 --out "$OUT/$ds-$method-samples.npy"
  done
  [[ " ${METHODS:-fort-cnf} " == *" fort-cnf "* ]] && \
  "$FORT" eval --teacher "$OUT/$ds-teacher.safetensors" --data "$OUT/$ds-test.npy" --label "$ds cnf-teacher train_s=-" | tee -a "$RESULTS"
done

# One table: data set, method, mean / median held-out NLL, hole fraction, round-trip error.
{
  echo "| data | method | mean NLL | median NLL | holes (NLL > 20) | max round-trip error | train s |"
  echo "|---|---|---|---|---|---|---|"
  awk '{
    ds=$1; m=$2; t=$3; sub("train_s=","",t); sub(":","",t);
    mean=med=holes=rt="-";
    for (i=4;i<=NF;i++) { split($i,kv,"="); if (kv[1]=="mean_nll") mean=kv[2]; if (kv[1]=="median_nll") med=kv[2];
      if (kv[1] ~ /^holes/) holes=kv[2]; if (kv[1]=="max_roundtrip_err") rt=kv[2]; }
    printf "| %s | %s | %s | %s | %s | %s | %s |\n", ds, m, mean, med, holes, rt, t }' "$RESULTS"
} > "$OUT/results.md"
echo
echo "== results ($ARCH coupling, 8 layers, MLP 2x$WIDTH, $STEPS steps; held-out NLL in nats)"
cat "$OUT/results.md"

if [ "${FORT_SMOKE:-0}" != 1 ] && /usr/bin/python3 -c "import matplotlib" 2> /dev/null; then
  /usr/bin/python3 scripts/plot_2d.py "$OUT" $DATASETS && echo "wrote $OUT/samples.png"
fi
