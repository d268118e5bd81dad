#!/usr/bin/env bash
# The GPU checks in one go, each part under its own time limit; a part that fails or runs out
# of time is reported and the next one runs all the same.
#
# Usage, from anywhere inside the repository, on a machine with an NVIDIA GPU and CuPy:
#
#     OUT=/some/folder bash kernels/gpu_check.sh
#
# Parts (limits in seconds; typical total about 5 minutes on an H100, at most about 9):
#   1. tests     pytest -m gpu: every kernel against the NumPy reference, the model's GPU path
#                (--attention cublas/flash/auto, --fused) against NumPy, a short training run
#                with flash attention against the CPU run                            (150)
#   2. kernels   minireason bench kernels at T = 1024 and 4096: kernels 1, 2, 3, 4, 5 and
#                torch SDPA, validated then timed                                    (90)
#   3. train     minireason bench gpu-train: one CuPy training step, cublas vs flash, with
#                and without --fused, vs PyTorch CUDA eager, at issue 33's two configs  (75)
#   4. ncu       Nsight Compute on one launch each of kernels 3 and 5 at T = 1024, when ncu
#                is on PATH                                                          (60)
#   5. cpu       minireason bench train --scaling on the machine's CPU cores: the thread plan
#                measured for them, NumPy against PyTorch eager on as many threads, and the
#                NumPy step on 1, 2, 4, ... threads under each plan (issue 30)       (150)
#
# Everything goes to $OUT (default ./gpu_check_out/): gpu_check.log (this script's log),
# summary.md (every table in one file), environment.txt, tests.log, kernel_bench.{md,png,json},
# bench_kernels.log, gpu_train_bench.{md,png,json}, bench_train.log, ncu.log, bench_cpu.log,
# cpu_train_bench.json.
# Exit status: 0 when every part that ran passed, 1 when one failed or timed out, 2 when there
# is no usable GPU (nothing was run: the log says why).

set -u
repo="$(cd "$(dirname "$0")/.." && pwd)" || exit 1
out="${OUT:-$repo/gpu_check_out}"
mkdir -p "$out" && out="$(cd "$out" && pwd)" || exit 1  # absolute before the cd below
cd "$repo" || exit 1
summary="$out/gpu_check.log"
: >"$summary"
PYTHON="${PYTHON:-python3}"

log() {
    echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$summary"
}

declare -A status=()  # part -> "passed" | "FAILED (exit N)" | "TIMED OUT" | "skipped: why"
parts=(tests kernels train ncu cpu)

# run_part NAME LIMIT LOGFILE COMMAND...: COMMAND under `timeout LIMIT`, output to LOGFILE.
run_part() {
    local name="$1" limit="$2" logfile="$3"
    shift 3
    log "part $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$logfile" 2>&1
    local rc=$?
    case $rc in
        0) status[$name]="passed" ;;
        124 | 137) status[$name]="TIMED OUT after ${limit} s" ;;
        *) status[$name]="FAILED (exit $rc)" ;;
    esac
    tail -n 12 "$logfile" | tee -a "$summary"
    log "part $name: ${status[$name]} in $((SECONDS - start)) s (log: $(basename "$logfile"))"
}

# A fresh machine may have CuPy but not this package: install it in place, without deps.
if ! "$PYTHON" -c "import minireason.cli" >/dev/null 2>&1; then
    log "minireason not importable: pip install --no-deps -e . (quietly, log in pip.log)"
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . >"$out/pip.log" 2>&1 \
        || log "pip install failed (see pip.log); running from the source tree"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    date -u
    git -C "$repo" log -1 --format='commit %h %s' 2>/dev/null || echo "not a git checkout"
    git -C "$repo" status --short 2>/dev/null | head -n 20
    nvidia-smi || echo "nvidia-smi not available"
    if command -v nvcc >/dev/null; then nvcc --version | tail -n 1; else echo "nvcc not available"; fi
    if command -v ncu >/dev/null; then ncu --version | tail -n 1; else echo "ncu not available"; fi
    "$PYTHON" - <<'EOF'
import importlib
import platform

print("python", platform.python_version())
for name in ("numpy", "cupy", "torch", "pytest", "matplotlib", "tqdm"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # report, do not stop: the parts below say what they need
        print(name, "unavailable:", exc)
EOF
} >"$out/environment.txt" 2>&1
log "environment written to $out/environment.txt"

# Without a usable GPU every part below would be skipped or refused: say why, write the
# summary, stop.
gpu_ok=1
if ! why=$("$PYTHON" -c "import sys; from minireason.backend import gpu_available; ok, why = gpu_available(); print(why); sys.exit(0 if ok else 1)" 2>&1); then
    gpu_ok=0
    log "no usable GPU, nothing run: $why"
    for part in "${parts[@]}"; do status[$part]="skipped: no usable GPU"; done
fi

if [ "$gpu_ok" -eq 1 ]; then
    # --continue-on-collection-errors: a test module that cannot import here (a missing
    # optional package) must not stop the GPU tests; its error still shows in tests.log.
    run_part tests 150 "$out/tests.log" \
        "$PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider --continue-on-collection-errors

    run_part kernels 90 "$out/bench_kernels.log" \
        "$PYTHON" -m minireason.cli bench kernels --seq-lens 1024 4096 \
        --warmup 2 --max-runs 20 --budget 0.5 --time-limit 55 \
        --out-dir "$out" --json "$out/kernel_bench.json"

    run_part train 75 "$out/bench_train.log" \
        "$PYTHON" -m minireason.cli bench gpu-train --steps 20 --warmup 3 \
        --out-dir "$out" --json "$out/gpu_train_bench.json"

    if command -v ncu >/dev/null 2>&1; then
        # One launch of kernel 3 and one of kernel 5, B=8 H=12 T=1024 D=64, not causal (the
        # README's profile of kernel 3 was taken at this shape). ncu locks the clocks: its
        # durations are not the benchmark's.
        run_part ncu 60 "$out/ncu.log" \
            ncu --target-processes all -k "regex:attention_forward(3_flash|5_flash_d64)" \
            --launch-count 2 --section SpeedOfLight --section Occupancy --section LaunchStats \
            --section WarpStateStats --section SchedulerStats \
            "$PYTHON" -c "
import numpy as np
from minireason import backend
from minireason.gpu import cuda_attention as ca
backend.set_device('cuda')
cp = backend.xp()
q, k, v = (cp.random.standard_normal((8, 12, 1024, 64), dtype=np.float32) for _ in range(3))
ca.attention_forward3_flash(q, k, v)
ca.attention_forward5_flash(q, k, v)
"
    else
        status[ncu]="skipped: ncu not on PATH"
        log "part ncu: ${status[ncu]}"
    fi

    # Last, with the GPU idle: the CPU's cores. The plan cache of a fresh machine is empty,
    # so the plan is measured first (the report's first line says which ran).
    run_part cpu 150 "$out/bench_cpu.log" \
        "$PYTHON" -m minireason.cli bench train --scaling --steps 5 --warmup 1 \
        --json "$out/cpu_train_bench.json"
fi

# summary.md: the parts' status and every table that was written, in one file.
{
    echo "# gpu_check $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    head -n 3 "$out/environment.txt"
    echo
    echo "| part | status |"
    echo "|---|---|"
    for part in "${parts[@]}"; do echo "| $part | ${status[$part]} |"; done
    echo
    if [ -f "$out/tests.log" ]; then
        echo "## tests"
        echo
        tail -n 3 "$out/tests.log"
        echo
    fi
    for table in kernel_bench.md gpu_train_bench.md; do
        if [ -f "$out/$table" ]; then
            echo "## $table"
            echo
            cat "$out/$table"
            echo
        fi
    done
    if [ -f "$out/bench_cpu.log" ]; then
        echo "## cpu (bench train --scaling)"
        echo
        echo '```'
        cat "$out/bench_cpu.log"
        echo '```'
        echo
    fi
    if [ -f "$out/ncu.log" ]; then
        echo "## ncu (selected lines)"
        echo
        echo '```'
        grep -E "attention_forward|Duration|Registers Per Thread|Theoretical Occupancy|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|One or More Eligible|Warp Cycles Per Issued" \
            "$out/ncu.log" | head -n 60
        echo '```'
    fi
} >"$out/summary.md" 2>&1
log "summary written to $out/summary.md"

if [ "$gpu_ok" -eq 0 ]; then
    exit 2
fi
failed=0
for part in "${parts[@]}"; do
    case "${status[$part]}" in passed | skipped*) ;; *) failed=1 ;; esac
done
if [ "$failed" -eq 0 ]; then
    log "ALL PASSED"
    exit 0
fi
log "FAILED: $(for p in "${parts[@]}"; do printf '%s: %s; ' "$p" "${status[$p]}"; done)"
exit 1
