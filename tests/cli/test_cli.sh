#!/usr/bin/env bash
# End-to-end checks of the `fort` command: every error path gives a one-line "fort: ..." message
# naming the problem and a non-zero exit; --help documents the options and exits 0; a tiny
# train/sample/eval pipeline works; the same seed gives a bit-identical model file at 1 and at
# 2 threads. Usage: test_cli.sh /path/to/fort   (run by CTest as `fort_cli_tests`)
set -uo pipefail
FORT=${1:?usage: test_cli.sh /path/to/fort}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*"; }

# expect_error CODE PATTERN -- fort args...: exit status CODE, stderr exactly one line matching PATTERN.
expect_error() {
  local code=$1 pattern=$2; shift 3
  "$FORT" "$@" > "$T/out" 2> "$T/err"
  local rc=$?
  local lines; lines=$(wc -l < "$T/err")
  if [ "$rc" != "$code" ]; then bad "fort $* exited $rc, expected $code ($(cat "$T/err"))"; return; fi
  if [ "$lines" != 1 ]; then bad "fort $* printed $lines lines on stderr, expected 1: $(cat "$T/err")"; return; fi
  if ! grep -Eq "^fort: .*$pattern" "$T/err"; then bad "fort $*: '$(cat "$T/err")' does not match '$pattern'"; return; fi
  ok
}

# expect_ok -- fort args...
expect_ok() {
  shift
  if "$FORT" "$@" > "$T/out" 2> "$T/err"; then ok; else bad "fort $* failed: $(cat "$T/err")"; fi
}

# ---- help -------------------------------------------------------------------------------------
expect_ok -- --help
grep -q "train" "$T/out" && ok || bad "fort --help does not list train"
for cmd in data train sample eval; do
  expect_ok -- "$cmd" --help
  grep -q -- "--" "$T/out" && ok || bad "fort $cmd --help lists no options"
done
# The help text is captured first: `fort … | grep -q` can fail under pipefail when grep exits
# early and the writer gets SIGPIPE.
train_help=$("$FORT" train --help)
for opt in --targets --loss --arch --layers --width --lambda-logdet --lambda-fb --target-noise --beta-nll --threads \
  --teacher-batch; do
  grep -q -- "$opt" <<< "$train_help" && ok || bad "fort train --help does not document $opt"
done

# ---- bad usage --------------------------------------------------------------------------------
expect_error 2 "unknown command 'frobnicate'" -- frobnicate
expect_error 1 "unknown option '--nope'" -- data --name moons --out "$T/x.npy" --nope 1
expect_error 1 "missing required option --out" -- data --name moons
expect_error 1 "needs a value" -- data --name moons --out
expect_error 1 "name" -- data --name spirals --out "$T/x.npy"
expect_error 1 "n" -- data --name moons --n 0 --out "$T/x.npy"
expect_error 1 "n" -- data --name moons --n abc --out "$T/x.npy"

# ---- data and a tiny pipeline -----------------------------------------------------------------
expect_ok -- data --name moons --n 600 --seed 1 --out "$T/train.npy"
expect_ok -- data --name moons --n 200 --seed 2 --out "$T/test.npy"
small=(--layers 2 --width 8 --depth 1 --batch 64 --quiet --val-fraction 0.1)
expect_ok -- train --data "$T/train.npy" --out "$T/ot.safetensors" --loss fort --targets ot --steps 20 "${small[@]}"
expect_ok -- train --data "$T/train.npy" --out "$T/mle.safetensors" --loss mle --arch affine --steps 20 "${small[@]}"
expect_ok -- train --data "$T/train.npy" --out "$T/cnf.safetensors" --loss fort --targets cnf --teacher-steps 10 \
  --teacher-width 8 --ode-steps 4 --teacher-out "$T/teacher.safetensors" --steps 20 "${small[@]}"
expect_ok -- sample --model "$T/ot.safetensors" --n 50 --out "$T/s.npy" --log-prob-out "$T/lp.npy"
expect_ok -- eval --model "$T/mle.safetensors" --data "$T/test.npy"
grep -q "mean_nll=" "$T/out" && grep -q "holes(nll>20)" "$T/out" && ok || bad "eval output lacks mean_nll/holes: $(cat "$T/out")"
expect_ok -- eval --model "$T/mle.safetensors" --data "$T/test.npy" --threshold 5
grep -q "holes(nll>5)" "$T/out" && ok || bad "eval --threshold 5 not reflected: $(cat "$T/out")"
expect_ok -- eval --teacher "$T/teacher.safetensors" --data "$T/test.npy"
# A teacher with Fourier time features is saved with them and reloads to the same network.
expect_ok -- train --data "$T/train.npy" --out "$T/cnf4.safetensors" --loss fort --targets cnf --teacher-steps 10 \
  --teacher-width 8 --teacher-time-frequencies 2 --teacher-batch 32 --ode-steps 4 --teacher-out "$T/teacher4.safetensors" --steps 5 "${small[@]}"
expect_ok -- eval --teacher "$T/teacher4.safetensors" --data "$T/test.npy"
grep -q "mean_nll=" "$T/out" && ok || bad "teacher with time features: $(cat "$T/out")"
expect_error 1 "teacher-time-frequencies" -- train --data "$T/train.npy" --out "$T/m.safetensors" --targets cnf \
  --teacher-time-frequencies -1
# A saved teacher reproduces the pairs of the run that trained it: same model, same samples.
expect_ok -- train --data "$T/train.npy" --out "$T/cnf-in.safetensors" --loss fort --targets cnf \
  --teacher-in "$T/teacher.safetensors" --ode-steps 4 --steps 20 "${small[@]}"
expect_ok -- sample --model "$T/cnf.safetensors" --n 30 --out "$T/s-cnf.npy"
expect_ok -- sample --model "$T/cnf-in.safetensors" --n 30 --out "$T/s-cnf-in.npy"
cmp -s "$T/s-cnf.npy" "$T/s-cnf-in.npy" && ok || bad "--teacher-in does not reproduce the run that saved the teacher"
expect_error 1 "is not a CNF teacher file" -- train --data "$T/train.npy" --out "$T/m.safetensors" --targets cnf \
  --teacher-in "$T/ot.safetensors"
expect_ok -- data --name checkerboard --n 300 --seed 4 --out "$T/other.npy"
expect_error 1 "different standardisation" -- train --data "$T/other.npy" --out "$T/m.safetensors" --targets cnf \
  --teacher-in "$T/teacher.safetensors"
expect_error 1 "teacher-batch" -- train --data "$T/train.npy" --out "$T/m.safetensors" --targets cnf --teacher-batch -1

# ---- bad training options and inputs ----------------------------------------------------------
expect_error 1 "targets" -- train --data "$T/train.npy" --out "$T/m.safetensors" --targets sinkhorn
expect_error 1 "loss" -- train --data "$T/train.npy" --out "$T/m.safetensors" --loss kl
expect_error 1 "targets applies to --loss fort only" -- train --data "$T/train.npy" --out "$T/m.safetensors" --loss mle --targets ot
expect_error 1 "arch" -- train --data "$T/train.npy" --out "$T/m.safetensors" --arch glow
expect_error 1 "lr" -- train --data "$T/train.npy" --out "$T/m.safetensors" --lr -1
expect_error 1 "batch" -- train --data "$T/train.npy" --out "$T/m.safetensors" --batch 0
expect_error 1 "val-fraction" -- train --data "$T/train.npy" --out "$T/m.safetensors" --val-fraction 0.95
expect_error 1 "no such file|cannot open|missing.npy" -- train --data "$T/missing.npy" --out "$T/m.safetensors"
head -c 100 "$T/train.npy" > "$T/trunc.npy"
expect_error 1 "trunc" -- train --data "$T/trunc.npy" --out "$T/m.safetensors"
printf 'not an npy file at all, just text\n' > "$T/text.npy"
expect_error 1 "text.npy" -- train --data "$T/text.npy" --out "$T/m.safetensors"
# NaN in the data: a clear error, and the previous model file survives untouched.
cp "$T/ot.safetensors" "$T/keep.safetensors"
/usr/bin/env python3 - "$T/train.npy" "$T/nan.npy" << 'EOF' 2> /dev/null || cp "$T/train.npy" "$T/nan.npy"
import sys, struct
raw = open(sys.argv[1], "rb").read()
hlen = struct.unpack("<H", raw[8:10])[0]
body = bytearray(raw[10 + hlen:])
body[8 * 7:8 * 8] = struct.pack("<d", float("nan"))
open(sys.argv[2], "wb").write(raw[:10 + hlen] + bytes(body))
EOF
expect_error 1 "finite|NaN|nan" -- train --data "$T/nan.npy" --out "$T/keep.safetensors" --steps 5 "${small[@]}"
cmp -s "$T/ot.safetensors" "$T/keep.safetensors" && ok || bad "a failed train overwrote the old model file"

# ---- bad models for sample / eval ---------------------------------------------------------------
expect_error 1 "columns" -- eval --model "$T/ot.safetensors" --data "$T/lp.npy"
expect_error 1 "exactly one of --model and --teacher" -- eval --data "$T/test.npy"
expect_error 1 "teacher" -- sample --model "$T/teacher.safetensors" --n 5 --out "$T/s2.npy"
head -c 200 "$T/ot.safetensors" > "$T/trunc.safetensors"
expect_error 1 "trunc.safetensors" -- sample --model "$T/trunc.safetensors" --n 5 --out "$T/s2.npy"
expect_error 1 "n" -- sample --model "$T/ot.safetensors" --n 0 --out "$T/s2.npy"

# ---- same seed: bit-identical model file at 1 and at 2 threads ----------------------------------
for method in "--loss fort --targets ot" "--loss mle" "--loss fort --targets cnf --teacher-steps 10 --teacher-width 8 --ode-steps 4"; do
  # shellcheck disable=SC2086
  "$FORT" train --data "$T/train.npy" --out "$T/t1.safetensors" $method --steps 30 --seed 7 --threads 1 "${small[@]}" 2> /dev/null
  # shellcheck disable=SC2086
  "$FORT" train --data "$T/train.npy" --out "$T/t2.safetensors" $method --steps 30 --seed 7 --threads 2 "${small[@]}" 2> /dev/null
  # train_seconds differs between runs; everything else, parameters included, must be identical.
  if /usr/bin/env python3 - "$T/t1.safetensors" "$T/t2.safetensors" << 'EOF'
import sys, json, struct
def load(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    h.get("__metadata__", {}).pop("fort.train_seconds", None)
    return h, raw[8 + n:]
a, b = load(sys.argv[1]), load(sys.argv[2])
sys.exit(0 if a == b else 1)
EOF
  then ok; else bad "model files differ between 1 and 2 threads ($method)"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
