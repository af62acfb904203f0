#!/usr/bin/env bash
# One check of a machine with one GPU: install, GPU-relevant tests, the speed harness, and the
# hallucination benchmark's --quick, everything written under $OUT, in under 8 minutes.
#
#   OUT=/tmp/check benchmarks/device_check.sh                 # on the GPU machine
#   DEVICE_CHECK_CPU=1 OUT=/tmp/check benchmarks/device_check.sh   # here, with the CPU build
#
# Stages (each under its own timeout, and all under DEVICE_CHECK_SECONDS, default 480; on a
# slow or loaded machine DEVICE_CHECK_SCALE=N multiplies every limit, the budget included):
#   install      a venv in $OUT/venv (or $VENV) with `pip install -e '.[cuda12]'`; with
#                DEVICE_CHECK_CPU=1 no install: the venv $VENV (default /work/main/.venv)
#   backend      which devices jax sees (must be a GPU unless DEVICE_CHECK_CPU=1)
#   tests        the GPU-relevant tests in TESTS below (steps, parallel modes, diffusion
#                maths, checkpointing, the convolutions)
#   torch        PyTorch for the harness's twins, if it installs (else one line and skipped)
#   harness      `python -m benchmarks.run --quick` (steps, torch, multi_seed) -> $OUT/harness
#   hallucination `python -m experiments.hallucination_benchmark --quick` -> $OUT/hallucination
# Each stage's output is $OUT/<stage>.log; $OUT/summary.txt has one line per stage (exit
# code, seconds). The exit code is 0 when every stage passed, 1 otherwise (the later stages
# still run after a failed one, so one run shows everything).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$(mktemp -d -t device-check-XXXXXX)}"
CPU="${DEVICE_CHECK_CPU:-0}"
SCALE="${DEVICE_CHECK_SCALE:-1}"
BUDGET=$((${DEVICE_CHECK_SECONDS:-480} * SCALE))
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # Test processes share the one GPU's memory.
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# The GPU-relevant tests (at most about 3 minutes on a GPU machine).
TESTS=(
  tests/training/test_parallel.py
  tests/training/test_vae_step_reference.py
  tests/training/test_diffusion.py
  tests/test_checkpointing.py
  tests/models/test_conv_matmul.py
)

START=$(date +%s)
FAILED=()
: >"$OUT/summary.txt"

# stage NAME SECONDS 'COMMAND': runs the bash COMMAND in the repository, output in
# $OUT/NAME.log, under min(SECONDS, what is left of the budget); records its exit code (124:
# timed out). A failed stage is recorded, not fatal: the next stages still run.
stage() {
  local name="$1" limit=$(($2 * SCALE)) command="$3" left rc=0 began
  left=$((BUDGET - ($(date +%s) - START)))
  if ((left < limit)); then limit=$left; fi
  began=$(date +%s)
  if ((limit <= 0)); then
    rc=124
    echo "out of time before this stage" >"$OUT/$name.log"
  else
    (cd "$REPO" && timeout --kill-after=10 "$limit" bash -euo pipefail -c "$command") \
      >"$OUT/$name.log" 2>&1 || rc=$?
  fi
  echo "$name: exit $rc, $(($(date +%s) - began)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
  if ((rc != 0)); then
    FAILED+=("$name")
    tail -n 20 "$OUT/$name.log" | sed "s/^/  $name| /"
  fi
}

echo "device_check: writing to $OUT"
if [[ "$CPU" == "1" ]]; then
  VENV="${VENV:-/work/main/.venv}"
  export JAX_PLATFORMS=cpu
  echo "install: skipped (DEVICE_CHECK_CPU=1: the CPU build in $VENV)" | tee -a "$OUT/summary.txt"
else
  VENV="${VENV:-$OUT/venv}"
  stage install 240 "python3 -m venv '$VENV' && '$VENV/bin/pip' install --quiet -e '.[cuda12]' pytest"
fi
PY="$VENV/bin/python"
export PY OUT

stage backend 60 '"$PY" - <<PYTHON
import jax, sys
print(jax.__version__, jax.default_backend(), jax.devices())
sys.exit(0 if '"$CPU"' == 1 or jax.default_backend() == "gpu" else "no GPU visible to jax")
PYTHON
nvidia-smi || true
"$PY" -m pip freeze'

stage tests 180 '"$PY" -m pytest -q -p no:cacheprovider '"${TESTS[*]}"

HARNESS_SECTIONS="steps,multi_seed"
if [[ "$CPU" == "1" ]]; then
  TORCH_COMMAND='"$PY" -c "import torch; print(torch.__version__)"'
else  # The default index serves the CUDA build.
  TORCH_COMMAND='"$PY" -m pip install --quiet torch && "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available())"'
fi
if (cd "$REPO" && timeout 120 bash -c "$TORCH_COMMAND") >"$OUT/torch.log" 2>&1; then
  HARNESS_SECTIONS="steps,torch,multi_seed"
  echo "torch: $(tail -n 1 "$OUT/torch.log")" | tee -a "$OUT/summary.txt"
else
  echo "torch: not installable here; the harness runs without the PyTorch twins" \
    | tee -a "$OUT/summary.txt"
fi

stage harness 150 '"$PY" -m benchmarks.run --quick --only='"$HARNESS_SECTIONS"' --output_dir="$OUT/harness"'

stage hallucination 150 'mkdir -p "$OUT/tfds" && "$PY" -m experiments.hallucination_benchmark --quick --out "$OUT/hallucination" --data_dir "$OUT/tfds"'

echo "device_check: $(($(date +%s) - START)) s in all; summary in $OUT/summary.txt" \
  | tee -a "$OUT/summary.txt"
if ((${#FAILED[@]})); then
  echo "device_check: failed stages: ${FAILED[*]}" | tee -a "$OUT/summary.txt"
  exit 1
fi
