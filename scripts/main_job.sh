#!/usr/bin/env bash
# Main job: a Boltzmann generator for alanine dipeptide, trained by FORT on OpenMM molecular
# dynamics and judged by OpenMM energies (docs/alanine.md).
#
#   1. installs what it needs (Debian: OpenMM 7.7 C++ and Python, numpy, matplotlib, mdtraj docs
#      for native.pdb, cmake, g++, Eigen), builds `fort` and `fort_alanine`;
#   2. runs implicit-solvent MD (examples/alanine/md.py; cached in $OUT/data: a second run with
#      the same parameters reuses it) and maps frames to 60 standard-frame coordinates;
#   3. trains MLE, FORT-OT and FORT-CNF on the same architecture (affine and spline couplings);
#   4. evaluates each with OpenMM energies from C++ (ESS, E-W1/E-W2, T-W2, held-out NLL, sampling
#      time), runs the Metropolis-Hastings embedding example, draws the Ramachandran plot and
#      prints the table (also $OUT/results.md).
#
# Environment: FORT_SMOKE=1 runs a tiny version (CI, a few minutes); FORT_LONG=1 more MD and
# steps; JOBS build parallelism; BUILD build directory; ARCHS ("affine spline"), N_TRAIN, N_TEST,
# STRIDE, EQUIL, N_SAMPLES and the *_STEPS variables below override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=${FORT_SMOKE:-0}

if [ "$SMOKE" = 1 ]; then
  : "${N_TRAIN:=1000}" "${N_TEST:=500}" "${STRIDE:=100}" "${EQUIL:=2000}" "${OUT:=out/alanine-smoke}"
  : "${LAYERS:=4}" "${WIDTH:=32}" "${N_SAMPLES:=5000}" "${TW2_N:=300}" "${MH_CYCLES:=100}"
  : "${AFFINE_MLE_STEPS:=100}" "${AFFINE_FORT_STEPS:=100}" "${AFFINE_CNF_STEPS:=100}" "${AFFINE_TEACHER_STEPS:=100}"
  : "${SPLINE_MLE_STEPS:=30}" "${SPLINE_FORT_STEPS:=30}" "${SPLINE_CNF_STEPS:=30}" "${SPLINE_TEACHER_STEPS:=100}"
elif [ "${FORT_LONG:-0}" = 1 ]; then
  : "${N_TRAIN:=50000}" "${N_TEST:=20000}" "${OUT:=out/alanine-long}" "${AFFINE_MLE_STEPS:=20000}"
  : "${AFFINE_FORT_STEPS:=30000}" "${AFFINE_CNF_STEPS:=25000}" "${AFFINE_TEACHER_STEPS:=20000}"
  : "${SPLINE_MLE_STEPS:=6000}" "${SPLINE_FORT_STEPS:=7000}" "${SPLINE_CNF_STEPS:=6000}" "${SPLINE_TEACHER_STEPS:=20000}"
fi
# Defaults (docs/alanine.md, section 5): about one minute of training per model on 2 cores,
# with step counts chosen so that MLE, FORT-OT and FORT-CNF (teacher + pairs + student) get the
# same wall time (measured 2026-12-04: affine MLE 88 steps/s, spline MLE 25 steps/s).
: "${N_TRAIN:=10000}" "${N_TEST:=5000}" "${STRIDE:=250}" "${EQUIL:=50000}" "${MD_SEED:=1}" "${OUT:=out/alanine}"
: "${ARCHS:=affine spline}" "${LAYERS:=8}" "${WIDTH:=128}" "${N_SAMPLES:=100000}" "${TW2_N:=2000}"
: "${AFFINE_MLE_STEPS:=5600}" "${AFFINE_FORT_STEPS:=5500}" "${AFFINE_CNF_STEPS:=4000}" "${AFFINE_TEACHER_STEPS:=4000}"
: "${SPLINE_MLE_STEPS:=1600}" "${SPLINE_FORT_STEPS:=1400}" "${SPLINE_CNF_STEPS:=800}" "${SPLINE_TEACHER_STEPS:=4000}"
: "${MH_CYCLES:=2000}" "${MH_MD_STEPS:=100}" "${BUILD:=build}" "${COORDS:=internal}"
PDB=/usr/share/doc/python-mdtraj-doc/examples/data/native.pdb
job_start=$(date +%s)

# ---- 1. packages -------------------------------------------------------------------------
need_apt=""
command -v cmake > /dev/null || need_apt="$need_apt cmake"
command -v g++ > /dev/null || need_apt="$need_apt g++"
command -v make > /dev/null || need_apt="$need_apt make"  # cmake only recommends it
[ -f /usr/include/eigen3/Eigen/Core ] || need_apt="$need_apt libeigen3-dev"
[ -f /usr/include/OpenMM.h ] || need_apt="$need_apt libopenmm-dev"
[ -d /usr/lib/x86_64-linux-gnu/openmm/plugins ] || ls /usr/lib/*/openmm/plugins > /dev/null 2>&1 || need_apt="$need_apt libopenmm-plugins"
/usr/bin/python3 -c "import openmm" 2> /dev/null || /usr/bin/python3 -c "import simtk.openmm" 2> /dev/null || need_apt="$need_apt python3-simtk"
/usr/bin/python3 -c "import numpy" 2> /dev/null || need_apt="$need_apt python3-numpy"
/usr/bin/python3 -c "import matplotlib" 2> /dev/null || need_apt="$need_apt python3-matplotlib"
[ -f "$PDB" ] || need_apt="$need_apt python-mdtraj-doc"
SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
if [ -n "$need_apt" ]; then
  echo "== installing:$need_apt"
  $SUDO apt-get update -q > /dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need_apt > /dev/null || {
    # python-mdtraj-doc may be unavailable as an install candidate: fetch and unpack it instead.
    pkgs=${need_apt/python-mdtraj-doc/}
    [ -z "${pkgs// /}" ] || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs > /dev/null
  }
fi
if [ ! -f "$PDB" ]; then
  mkdir -p "$OUT/pkg" && (cd "$OUT/pkg" && apt-get download python-mdtraj-doc > /dev/null && dpkg-deb -x python-mdtraj-doc_*.deb root)
  PDB=$ROOT/$OUT/pkg/root/usr/share/doc/python-mdtraj-doc/examples/data/native.pdb
  [ -f "$PDB" ] || { echo "main_job: native.pdb not found (python-mdtraj-doc)" >&2; exit 1; }
fi

# ---- 2. build ------------------------------------------------------------------------------
echo "== building fort and fort_alanine ($BUILD)"
# Tests are not needed here (and Catch2 may be absent): scripts/test.sh switches them back on.
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFORT_BUILD_EXAMPLES=ON -DFORT_BUILD_TESTS=OFF > /dev/null
cmake --build "$BUILD" -j "${JOBS:-2}" --target fort_cli fort_alanine > /dev/null
FORT="$ROOT/$BUILD/examples/fort"
ALA="$ROOT/$BUILD/examples/fort_alanine"
[ -x "$ALA" ] || { echo "main_job: fort_alanine was not built (OpenMM not found by CMake?)" >&2; exit 1; }

# ---- 3. MD data (cached) -------------------------------------------------------------------
D="$OUT/data"
mkdir -p "$D"
key="n_train=$N_TRAIN n_test=$N_TEST stride=$STRIDE equil=$EQUIL seed=$MD_SEED pdb=$(basename "$PDB")"
files="system.xml train_therm_xyz.npy train_therm_energy.npy test_therm_xyz.npy test_therm_energy.npy"
cached=1
[ "$(cat "$D/params.txt" 2> /dev/null)" = "$key" ] || cached=0
for f in $files; do [ -f "$D/$f" ] || cached=0; done
t=$(date +%s)
if [ $cached = 1 ]; then
  echo "== MD data: reusing $D ($key)"
else
  echo "== MD data: $N_TRAIN training + $N_TEST held-out frames, every $((STRIDE * 2)) fs ($key)"
  rm -f "$D/params.txt"
  md=(/usr/bin/python3 examples/alanine/md.py --out "$D" --pdb "$PDB" --n-train "$N_TRAIN" --n-test "$N_TEST"
      --stride "$STRIDE" --equil "$EQUIL" --seed "$MD_SEED")
  "${md[@]}" --part system
  "${md[@]}" --part train 2> "$D/md_train.log" & pid=$!
  "${md[@]}" --part test 2> "$D/md_test.log" || { cat "$D/md_test.log"; exit 1; }
  wait $pid || { cat "$D/md_train.log"; exit 1; }
  cat "$D/md_train.log" "$D/md_test.log"
  echo "$key" > "$D/params.txt"
fi
md_s=$(($(date +%s) - t))
# The chart: internal coordinates (bond lengths, angles, dihedrals; offsets fitted on the training
# frames) by default, COORDS=frame for standard-frame Cartesian coordinates.
chart=(--coords "$COORDS" --offsets "$D/ic_offsets.npy")
"$ALA" frame "${chart[@]}" --fit-offsets --in "$D/train_therm_xyz.npy" --out "$D/train_q.npy"

# ---- 4. train and evaluate -----------------------------------------------------------------
R="$OUT/eval.txt"
: > "$R"
labels=""
for arch in $ARCHS; do
  A=$(echo "$arch" | tr a-z A-Z)
  mle_steps=$(eval echo "\$${A}_MLE_STEPS"); fort_steps=$(eval echo "\$${A}_FORT_STEPS")
  cnf_steps=$(eval echo "\$${A}_CNF_STEPS"); teacher_steps=$(eval echo "\$${A}_TEACHER_STEPS")
  common=(--data "$D/train_q.npy" --arch "$arch" --layers "$LAYERS" --width "$WIDTH" --depth 2 --batch 256
          --lr 1e-3 --warmup 100 --eval-every 200 --quiet --seed 1)
  for method in mle fort-ot fort-cnf; do
    label="$arch-$method"
    model="$OUT/$label.safetensors"
    echo "== train $label"
    t=$(date +%s.%N)
    case $method in
      mle) "$FORT" train "${common[@]}" --out "$model" --loss mle --steps "$mle_steps" --clip 10 ;;
      fort-ot) "$FORT" train "${common[@]}" --out "$model" --loss fort --targets ot --steps "$fort_steps" \
        --lambda-logdet 1e-5 ;;
      fort-cnf) "$FORT" train "${common[@]}" --out "$model" --loss fort --targets cnf --steps "$cnf_steps" \
        --lambda-logdet 1e-5 --teacher-steps "$teacher_steps" --teacher-width 256 --ode-steps 20 ;;
    esac
    train_s=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    "$ALA" eval --model "$model" --system "$D/system.xml" --test-xyz "$D/test_therm_xyz.npy" \
      --test-energy "$D/test_therm_energy.npy" "${chart[@]}" --n "$N_SAMPLES" --tw2-n "$TW2_N" --label "$label" \
      --out-prefix "$OUT/$label" | sed "s/\$/ train_s=$train_s/" | tee -a "$R"
    labels="$labels $label"
  done
done

# ---- 5. the embedding example: flow proposals inside MD (the model with the largest ESS) -----
best=$(awk '{ split($3, kv, "="); if (kv[2] + 0 > b) { b = kv[2] + 0; l = $1 } } END { sub(":", "", l); print l }' "$R")
[ -n "$best" ] || best=$(echo $labels | awk '{print $1}')
echo "== Metropolis-Hastings embedding with $best ($MH_CYCLES cycles of $MH_MD_STEPS MD steps + 1 proposal)"
"$ALA" mh --model "$OUT/$best.safetensors" --system "$D/system.xml" --init-xyz "$D/test_therm_xyz.npy" "${chart[@]}" \
  --cycles "$MH_CYCLES" --md-steps "$MH_MD_STEPS" | sed "s/^mh:/mh ($best):/" | tee "$OUT/mh.txt"

# ---- 6. plot and table -----------------------------------------------------------------------
/usr/bin/python3 examples/alanine/plot_rama.py "$OUT" "$D/test_therm_xyz.npy" $labels || echo "warning: no plot"
{
  echo "| model | ESS | E-W1 rw | E-W2 rw | E-W1 raw (clipped) | u > max MD | T-W2 raw | T-W2 rw | held-out NLL | non-finite u | train s | sample 1e5 s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk '{
    l=$1; sub(":","",l); delete v;
    for (i=2;i<=NF;i++) { split($i,kv,"="); v[kv[1]]=kv[2] }
    printf "| %s | %.2f%% | %s | %s | %s | %.1f%% | %s | %s | %s | %s | %.0f | %s |\n", l, 100*v["ess"], v["ew1_rw"], v["ew2_rw"],
      v["ew1_clip"], 100*v["high_e"], v["tw2"], v["tw2_rw"], v["nll"], v["nonfinite_energy"], v["train_s"], v["sample_s"] }' "$R"
} > "$OUT/results.md"
echo
echo "== results ($N_TRAIN MD training frames, $N_TEST held out; $N_SAMPLES samples per model; energies in kJ/mol;"
echo "   E-W against held-out MD; T-W2 in radians on the (phi, psi) torus, $TW2_N points; NLL in nats of the 60 $COORDS coordinates (nm, rad))"
cat "$OUT/results.md"
cat "$OUT/mh.txt"
echo "MD data ${md_s}s; whole job $(($(date +%s) - job_start))s; details in $OUT/eval.txt, plot $OUT/ramachandran.png"
