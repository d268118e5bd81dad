#!/usr/bin/env bash
# The GPU checks in one go: the `gpu`-marked tests, then `minireason bench kernels`.
#
# Usage, from anywhere inside the repository, on a machine with an NVIDIA GPU and CuPy:
#
#     bash kernels/gpu_check.sh
#
# Everything it produces goes to the folder named by $OUT when that is set, else to
# ./gpu_check_out/: gpu_check.log (this script's summary), environment.txt, tests.log,
# bench.log, kernel_bench.md (the table for kernels/README.md), kernel_bench.png and
# kernel_bench.json. Wall-clock budget: under 8 minutes (tests <= 200 s, benchmark <= 240 s).
# Exit status: 0 when the tests and the benchmark's validation all passed, else 1.

set -u
repo="$(cd "$(dirname "$0")/.." && pwd)" || exit 1
out="${OUT:-$repo/gpu_check_out}"
mkdir -p "$out" && out="$(cd "$out" && pwd)" || exit 1  # absolute before the cd below
cd "$repo" || exit 1
summary="$out/gpu_check.log"
: >"$summary"

log() {
    echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$summary"
}

PYTHON="${PYTHON:-python3}"

# A fresh machine may have CuPy but not this package: install it in place, without deps.
if ! "$PYTHON" -c "import minireason.cli" >/dev/null 2>&1; then
    log "minireason not importable: pip install --no-deps -e . (quietly, log in pip.log)"
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . >"$out/pip.log" 2>&1 \
        || log "pip install failed (see pip.log); running from the source tree"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    date -u
    nvidia-smi || echo "nvidia-smi not available"
    "$PYTHON" - <<'EOF'
import importlib
import platform

print("python", platform.python_version())
for name in ("numpy", "cupy", "torch", "pytest", "matplotlib", "tqdm"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # report, do not stop: the steps below say what they need
        print(name, "unavailable:", exc)
EOF
} >"$out/environment.txt" 2>&1
log "environment written to $out/environment.txt"

# Without a usable GPU every test below would be skipped and the benchmark refused: say why, stop.
if ! why=$("$PYTHON" -c "import sys; from minireason.backend import gpu_available; ok, why = gpu_available(); print(why); sys.exit(0 if ok else 1)" 2>&1); then
    log "FAILED, nothing was tested: no usable GPU: $why"
    exit 1
fi

log "step 1/2: pytest -m gpu (limit 200 s)"
# --continue-on-collection-errors: a test module that cannot import here (a missing optional
# package) must not stop the GPU tests; its error still shows in tests.log and the status.
timeout 200 "$PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider \
    --continue-on-collection-errors >"$out/tests.log" 2>&1
tests_rc=$?
tail -n 15 "$out/tests.log" | tee -a "$summary"
log "tests exit status: $tests_rc"

log "step 2/2: bench kernels (limit 240 s)"
timeout 240 "$PYTHON" -m minireason.cli bench kernels \
    --warmup 2 --max-runs 30 --budget 1.0 --time-limit 170 \
    --out-dir "$out" --json "$out/kernel_bench.json" >"$out/bench.log" 2>&1
bench_rc=$?
tail -n 60 "$out/bench.log" | tee -a "$summary"
log "benchmark exit status: $bench_rc (124 = hit the time limit)"

if [ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]; then
    log "ALL PASSED"
    exit 0
fi
log "FAILED: tests $tests_rc, benchmark $bench_rc; see $out/"
exit 1
