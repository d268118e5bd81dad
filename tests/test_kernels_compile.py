"""CPU-side checks of the CUDA kernels: they compile, ship, run correctly on CPU threads.

- Every ``kernels/*.cu`` is compiled once per architecture (sm_80, sm_90) with
  ``nvcc -Xptxas -v`` (warnings are errors); ptxas's registers and spills per kernel are
  parsed and printed (run with ``-s`` to see the table). Skipped, saying why, only where
  nvcc is absent.
- The same sources are compiled with g++ against ``kernels/cpu_threads/cuda_on_cpu.h`` and
  run with one std::thread per CUDA thread, against the NumPy reference and the NumPy
  emulations (skipped where g++ is absent); then the Python launchers of
  :mod:`minireason.gpu.cuda_attention` and :mod:`minireason.gpu.cuda_fused` are run on them.
- Packaging, launch constants, and ``bench kernels``' host side (report, plot, no-GPU error).
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from minireason.gpu import cuda_attention, cuda_fused, flash_emulation
from minireason.gpu import fused_emulation as fe

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR = ROOT / "kernels"
SOURCES = sorted(KERNEL_DIR.glob("*.cu"))
ARCHS = ("sm_80", "sm_90")
KERNEL_FILES = {**cuda_attention.KERNEL_FILES, **cuda_fused.KERNEL_FILES}  # every kernel: its file


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    candidate = Path(home) / "bin" / "nvcc"
    return str(candidate) if candidate.is_file() else None


def _parse_ptxas(text: str) -> dict:
    """``{kernel: {"registers": int, "spill_stores": int, "spill_loads": int}}`` from ptxas -v."""
    kernels = {}
    current = None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = kernels.setdefault(m.group(1), {})
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current["spill_stores"], current["spill_loads"] = int(m.group(1)), int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
    return kernels


@pytest.fixture(scope="module")
def ptxas_reports(tmp_path_factory):
    """Compile every source for every arch once (2 at a time); ``{(file, arch): kernels}``."""
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found on PATH or in $CUDA_HOME/bin: cannot compile the CUDA kernels")
    out_dir = tmp_path_factory.mktemp("cubin")

    def compile_one(job):
        source, arch = job
        cmd = [
            nvcc,
            f"-arch={arch}",
            "-cubin",
            "-O3",
            "-Xptxas",
            "-v",
            "-Werror",
            "all-warnings",
            "-o",
            str(out_dir / f"{source.stem}.{arch}.cubin"),
            str(source),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        return job, done

    jobs = [(s, a) for s in SOURCES for a in ARCHS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(compile_one, jobs))
    reports, failures = {}, []
    for (source, arch), done in results:
        if done.returncode != 0:
            failures.append(f"{source.name} for {arch}:\n{done.stdout}{done.stderr}")
        reports[(source.name, arch)] = _parse_ptxas(done.stdout + done.stderr)
    lines = [f"{'file':40s} {'arch':6s} {'kernel':28s} regs  spill st/ld (bytes)"]
    for (name, arch), kernels in sorted(reports.items()):
        for kernel, info in sorted(kernels.items()):
            lines.append(
                f"{name:40s} {arch:6s} {kernel:28s} {info.get('registers', '?'):>4}  "
                f"{info.get('spill_stores', '?')}/{info.get('spill_loads', '?')}"
            )
    print("\nptxas report (nvcc -Xptxas -v):\n" + "\n".join(lines))
    return reports, failures


def test_sources_exist_and_are_all_launched():
    assert SOURCES, f"no .cu files in {KERNEL_DIR}"
    assert {s.name for s in SOURCES} == set(KERNEL_FILES.values())


def test_every_kernel_compiles_for_sm80_and_sm90(ptxas_reports):
    reports, failures = ptxas_reports
    assert not failures, "nvcc failed:\n" + "\n".join(failures)
    assert len(reports) == len(SOURCES) * len(ARCHS)


def test_launched_names_are_the_compiled_entry_points(ptxas_reports):
    reports, _ = ptxas_reports
    for name, filename in KERNEL_FILES.items():
        for arch in ARCHS:
            assert name in reports[(filename, arch)], (
                f"{name} not an entry point of {filename} ({arch})"
            )


def test_no_register_spills(ptxas_reports):
    reports, _ = ptxas_reports
    for (filename, arch), kernels in reports.items():
        for kernel, info in kernels.items():
            assert info["spill_stores"] == 0 and info["spill_loads"] == 0, (
                filename,
                arch,
                kernel,
                info,
            )
            assert info["registers"] <= 65536 // cuda_attention.FLASH_THREADS


def _defines(filename: str) -> dict:
    text = (KERNEL_DIR / filename).read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"#define (\w+) (\d+)\b", text)}


def test_launch_constants_match_the_sources():
    assert _defines("attention_forward1_naive.cu")["NAIVE_THREADS"] == cuda_attention.NAIVE_THREADS
    assert (
        _defines("attention_forward2_fused_softmax.cu")["ROWS_PER_BLOCK"]
        == cuda_attention.ROWS_PER_BLOCK
    )
    for filename in ("attention_forward3_flash.cu", "attention_backward4_flash.cu"):
        d = _defines(filename)
        assert d["FLASH_BLOCK_M"] == flash_emulation.BLOCK_M
        assert d["FLASH_BLOCK_N"] == flash_emulation.BLOCK_N
        assert d["FLASH_THREADS"] == cuda_attention.FLASH_THREADS
        assert d["COLS_PER_LANE"] * 32 == flash_emulation.HEAD_DIM_MAX
    assert (
        _defines("attention_backward4_flash.cu")["DELTA_ROWS_PER_BLOCK"]
        == cuda_attention.DELTA_ROWS_PER_BLOCK
    )
    d = _defines("attention_forward5_flash_double_buffered.cu")
    assert d["FLASH5_BLOCK_M"] == flash_emulation.FLASH5_BLOCK_M
    assert d["FLASH5_BLOCK_N"] == flash_emulation.BLOCK_N
    assert d["FLASH5_THREADS"] == cuda_attention.FLASH5_THREADS


@pytest.mark.parametrize(
    "filename, names",
    [
        ("layernorm6_fused.cu", ("LN_ROWS_PER_BLOCK", "LN_DWDB_WARPS", "LN_DWDB_ROWS")),
        ("gelu7_fused.cu", ("GELU_THREADS", "GELU_MAX_BLOCKS")),
        ("cross_entropy8_fused.cu", ("CE_ROWS_PER_BLOCK",)),
        ("adamw9_fused.cu", ("ADAMW_THREADS", "ADAMW_MAX_BLOCKS")),
    ],
)
def test_fused_launch_constants_match_the_emulation(filename, names):
    d = _defines(filename)
    for name in names:
        assert d[name] == getattr(fe, name), (filename, name)


def test_gelu_constants_are_the_layers():
    """The .cu's float literals are nn.layers' GELU constants, grouped as the emulation's."""
    from minireason.nn.layers import GELU_CUBIC, GELU_SCALE

    text = (KERNEL_DIR / "gelu7_fused.cu").read_text()
    found = {
        m.group(1): float(m.group(2)) for m in re.finditer(r"#define (\w+) ([0-9.e-]+)f", text)
    }
    assert found == {
        "GELU_S": fe.GELU_S,
        "GELU_SC": fe.GELU_SC,
        "GELU_HALF_S": fe.GELU_HALF_S,
        "GELU_SC_3_HALVES": fe.GELU_SC_3_HALVES,
    }
    assert fe.GELU_S == GELU_SCALE and fe.GELU_SC == GELU_SCALE * GELU_CUBIC


def test_sources_ship_as_package_data():
    """importlib.resources finds each source in the installed package, identical to kernels/."""
    for source in SOURCES:
        assert cuda_attention.kernel_source(source.name) == source.read_text()
    with pytest.raises(FileNotFoundError, match="missing.cu"):
        cuda_attention.kernel_source("missing.cu")


def test_launchers_reject_host_arrays_and_bad_shapes():
    q = np.zeros((2, 8, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="CuPy array"):
        cuda_attention.attention_forward1_naive(q, q, q)
    with pytest.raises(ValueError, match="CuPy array"):
        cuda_attention.attention_forward3_flash(q, q, q)


def test_shared_memory_fits_an_a100_or_h100_block():
    """Kernel 3 and 4's tiles at head_dim 128 fit the 163 KiB opt-in limit of sm_80."""
    for size in (
        cuda_attention.flash_forward_shared_bytes,
        cuda_attention.flash_dkdv_shared_bytes,
        cuda_attention.flash_dq_shared_bytes,
    ):
        assert size(128) <= 163 * 1024
        assert size(64) <= cuda_attention.DEFAULT_SHARED_BYTES  # no opt-in at GPT-2's head_dim
    # kernel 5's two K/V buffers and 64-row tile: 3 blocks an H100 SM (228 KiB) at head_dim 64,
    # 2 at 128, as its __launch_bounds__ say; one still fits an A100 at 128
    assert cuda_attention.flash5_shared_bytes(64) == 57 * 1024
    assert 3 * (cuda_attention.flash5_shared_bytes(64) + 1024) <= 228 * 1024
    assert 2 * (cuda_attention.flash5_shared_bytes(128) + 1024) <= 228 * 1024
    assert cuda_attention.flash5_shared_bytes(128) <= 163 * 1024
    assert cuda_attention.flash5_kernel_name(64) == "attention_forward5_flash_d64"
    assert cuda_attention.flash5_kernel_name(65) == "attention_forward5_flash_d128"


# --------------------------------------------------------------------------- kernels run on CPU threads
# kernels/cpu_threads/ compiles each .cu with g++ and runs it with one std::thread per CUDA
# thread (barriers for __syncthreads, __syncwarp and the warp shuffles; shared memory
# poisoned with NaN). The same sources CuPy compiles are checked against the NumPy reference
# here, without a GPU; the launch geometry below is the one minireason.gpu.cuda_attention uses.

CPU_DIR = KERNEL_DIR / "cpu_threads"
# (B, Tq, Tk, D): ragged, Tq != Tk both ways, head_dim 128 and 7, a sub-tile length
CPU_SHAPES = [
    (2, 37, 37, 16),
    (2, 5, 70, 24),
    (2, 70, 5, 24),
    (1, 33, 95, 128),
    (1, 64, 64, 64),
    (2, 40, 33, 7),
]  # head_dim 7: kernel 3's float4 tiles are zero-padded to 8


@pytest.fixture(scope="module")
def cpu_kernels(tmp_path_factory):
    """``{kernel name: ctypes function(gx, gy, threads, void** args)}`` for every kernel, and
    ``{("lands_at_wait", kernel name): ctypes function(int)}``: where its cp.async copies land
    (1: at the issuing thread's wait, 0: at once; see cuda_on_cpu.h)."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: cannot run the CUDA kernels on CPU threads")
    out_dir = tmp_path_factory.mktemp("cpu_threads")

    def build(filename):
        names = [n for n, f in KERNEL_FILES.items() if f == filename]
        lib_path = out_dir / f"{Path(filename).stem}.so"
        cmd = [
            gxx,
            "-std=c++20",
            "-O1",
            "-shared",
            "-fPIC",
            "-pthread",
            "-Wall",
            "-Werror",
            "-Wno-unknown-pragmas",
            f'-DKERNEL_SOURCE="../{filename}"',
            "-DKERNELS=" + " ".join(f"EXPORT_KERNEL({n})" for n in names),
            str(CPU_DIR / "launch.cpp"),
            "-o",
            str(lib_path),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"g++ failed on {filename}:\n{done.stderr}"
        return names, ctypes.CDLL(str(lib_path))

    functions = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for names, lib in pool.map(build, sorted(set(KERNEL_FILES.values()))):
            for name in names:
                functions[name] = getattr(lib, f"cpu_launch_{name}")
                functions[("lands_at_wait", name)] = lib.cpu_set_copy_async_lands_at_wait
    return functions


def _run(fn, grid, threads, *args):
    """Launch like cuLaunchKernel: float32 arrays by pointer, np.int32 / np.float32 by value."""
    holders = []
    for a in args:
        if isinstance(a, np.ndarray):
            assert a.dtype in (np.float32, np.int64) and a.flags.c_contiguous
            holders.append(ctypes.c_void_p(a.ctypes.data))
        elif isinstance(a, np.int32):
            holders.append(ctypes.c_int(int(a)))
        elif isinstance(a, np.int64):
            holders.append(ctypes.c_longlong(int(a)))
        else:
            holders.append(ctypes.c_float(float(np.float32(a))))
    params = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
    fn(ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]), ctypes.c_uint(threads), params)


def _f32(*arrays):
    return [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]


def _nan(shape):
    return np.full(shape, np.nan, dtype=np.float32)


def _cpu_inputs(b, tq, tk, d, seed):
    rng = np.random.default_rng(seed)
    return _f32(*(rng.standard_normal((b, t, d)) for t in (tq, tk, tk)))


def _close32(got, ref, what):
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4, err_msg=what)


@pytest.mark.slow
@pytest.mark.parametrize("shape", CPU_SHAPES[:3])
def test_kernel1_on_cpu_threads(cpu_kernels, shape):
    from minireason.nn.attention import attention_forward

    b, tq, tk, d = shape
    q, k, v = _cpu_inputs(b, tq, tk, d, seed=1)
    rng = np.random.default_rng(2)
    mask = rng.random((b, tq, tk)) < 0.6
    mask[:, 0] = False  # a row with no key gives zeros
    bias = np.where(mask, 0.0, -np.inf).astype(np.float32)
    for causal, attn_mask in ((False, None), (True, None), (False, mask)):
        ref, _ = attention_forward(
            *(a.astype(np.float64) for a in (q, k, v)), attn_mask=attn_mask, is_causal=causal
        )
        out = _nan((b, tq, d))
        has_bias = attn_mask is not None
        _run(
            cpu_kernels["attention_forward1_naive"],
            (tq, b),
            cuda_attention.NAIVE_THREADS,
            q,
            k,
            v,
            bias if has_bias else _nan(1),
            out,
            np.int32(tq),
            np.int32(tk),
            np.int32(d),
            np.int32(d),
            1 / np.sqrt(d),
            np.int32(causal),
            np.int32(has_bias),
        )
        _close32(out, ref, f"kernel 1 {shape} causal={causal} mask={has_bias}")


def test_kernel2_softmax_on_cpu_threads(cpu_kernels):
    from minireason.nn.attention import causal_mask, masked_softmax

    rng = np.random.default_rng(3)
    b, tq, tk = 3, 45, 77
    scores = _f32(rng.standard_normal((b, tq, tk)))[0]
    bias = np.where(rng.random(scores.shape) < 0.3, -np.inf, 0.0).astype(np.float32)
    bias[1, 2] = -np.inf  # a fully masked row
    for causal, with_bias in ((False, True), (True, False)):
        got = scores.copy()
        rows = math.ceil(b * tq / cuda_attention.ROWS_PER_BLOCK)
        _run(
            cpu_kernels["scale_mask_softmax"],
            (rows, 1),
            32 * cuda_attention.ROWS_PER_BLOCK,
            got,
            bias if with_bias else _nan(1),
            np.int32(b),
            np.int32(tq),
            np.int32(tk),
            np.float32(0.5),
            np.int32(causal),
            np.int32(with_bias),
        )
        s = 0.5 * scores.astype(np.float64) + (bias if with_bias else 0.0)
        ref = masked_softmax(s, causal_mask(tq, tk) if causal else None)
        _close32(got, ref, f"scale_mask_softmax causal={causal} bias={with_bias}")


def _run_flash_forward(cpu_kernels, q, k, v, causal):
    b, tq, d = q.shape
    tk = k.shape[1]
    out, lse = _nan((b, tq, d)), _nan((b, tq))
    _run(
        cpu_kernels["attention_forward3_flash"],
        (math.ceil(tq / flash_emulation.BLOCK_M), b),
        cuda_attention.FLASH_THREADS,
        q,
        k,
        v,
        out,
        lse,
        np.int32(tq),
        np.int32(tk),
        np.int32(d),
        1 / np.sqrt(d),
        np.int32(causal),
    )
    return out, lse


@pytest.mark.slow
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", CPU_SHAPES)
def test_kernels_3_and_4_on_cpu_threads(cpu_kernels, shape, is_causal):
    b, tq, tk, d = shape
    q, k, v = _cpu_inputs(b, tq, tk, d, seed=tq + tk)
    (dout,) = _f32(np.random.default_rng(9).standard_normal((b, tq, d)))
    q64, k64, v64, do64 = (a.astype(np.float64) for a in (q, k, v, dout))
    ref_out, ref_lse = flash_emulation.flash_forward_emulated(q64, k64, v64, is_causal=is_causal)
    out, lse = _run_flash_forward(cpu_kernels, q, k, v, is_causal)
    _close32(out, ref_out, f"kernel 3 out {shape} causal={is_causal}")
    _close32(lse, ref_lse, f"kernel 3 lse {shape} causal={is_causal}")

    ref_grads = flash_emulation.flash_backward_emulated(
        do64, q64, k64, v64, ref_out, ref_lse, is_causal=is_causal
    )
    delta = _nan((b, tq))
    _run(
        cpu_kernels["flash_backward_delta"],
        (math.ceil(b * tq / cuda_attention.DELTA_ROWS_PER_BLOCK), 1),
        32 * cuda_attention.DELTA_ROWS_PER_BLOCK,
        dout,
        out,
        delta,
        np.int32(b * tq),
        np.int32(d),
    )
    _close32(delta, flash_emulation.flash_backward_delta(do64, ref_out), "delta")
    dq, dk, dv = _nan(q.shape), _nan(k.shape), _nan(v.shape)
    sizes = (np.int32(tq), np.int32(tk), np.int32(d), 1 / np.sqrt(d), np.int32(is_causal))
    _run(
        cpu_kernels["flash_backward_dkdv"],
        (math.ceil(tk / flash_emulation.BLOCK_N), b),
        cuda_attention.FLASH_THREADS,
        q,
        k,
        v,
        dout,
        lse,
        delta,
        dk,
        dv,
        *sizes,
    )
    _run(
        cpu_kernels["flash_backward_dq"],
        (math.ceil(tq / flash_emulation.BLOCK_M), b),
        cuda_attention.FLASH_THREADS,
        q,
        k,
        v,
        dout,
        lse,
        delta,
        dq,
        *sizes,
    )
    for name, got, ref in zip(("dq", "dk", "dv"), (dq, dk, dv), ref_grads):
        _close32(got, ref, f"kernel 4 {name} {shape} causal={is_causal}")


def _run_flash5(cpu_kernels, q, k, v, causal, use_16):
    b, tq, d = q.shape
    out, lse = _nan((b, tq, d)), _nan((b, tq))
    _run(
        cpu_kernels[cuda_attention.flash5_kernel_name(d)],
        (math.ceil(tq / flash_emulation.FLASH5_BLOCK_M), b),
        cuda_attention.FLASH5_THREADS,
        q,
        k,
        v,
        out,
        lse,
        np.int32(tq),
        np.int32(k.shape[1]),
        np.int32(d),
        1 / np.sqrt(d),
        np.int32(causal),
        np.int32(use_16),
    )
    return out, lse


@pytest.mark.slow
@pytest.mark.parametrize(
    "lands_at_wait", [1, 0], ids=["copies-land-at-wait", "copies-land-at-once"]
)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", CPU_SHAPES + [(1, 130, 150, 32)])
def test_kernel5_on_cpu_threads(cpu_kernels, shape, is_causal, lands_at_wait):
    """Kernel 5 against its emulation, its asynchronous copies landing as late as they may
    (a tile read before its wait shows NaN) or at once (a copy into a buffer still being
    read corrupts it); 16-byte copies where head_dim allows, 4-byte ones always."""
    b, tq, tk, d = shape
    q, k, v = _cpu_inputs(b, tq, tk, d, seed=tq + 3 * tk)
    ref_out, ref_lse = flash_emulation.flash_forward5_emulated(
        *(a.astype(np.float64) for a in (q, k, v)), is_causal=is_causal
    )
    name = cuda_attention.flash5_kernel_name(d)
    cpu_kernels[("lands_at_wait", name)](lands_at_wait)
    try:
        for use_16 in (1, 0) if d % 4 == 0 else (0,):
            out, lse = _run_flash5(cpu_kernels, q, k, v, is_causal, use_16)
            what = f"kernel 5 {shape} causal={is_causal} 16-byte copies={use_16}"
            _close32(out, ref_out, what + " out")
            _close32(lse, ref_lse, what + " lse")
    finally:
        cpu_kernels[("lands_at_wait", name)](1)


def _rows_launch(n, per_block):
    return (math.ceil(n / per_block), 1), 32 * per_block


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 5), (37, 100), (300, 64)])
def test_kernel6_layernorm_on_cpu_threads(cpu_kernels, shape):
    from minireason.nn.layers import layernorm_backward, layernorm_forward

    n, c = shape
    rng = np.random.default_rng(n + c)
    x, dout = _f32(rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape))
    w, b = _f32(rng.standard_normal(c), rng.standard_normal(c))
    out, mean, rstd = _nan(shape), _nan(n), _nan(n)
    grid, threads = _rows_launch(n, fe.LN_ROWS_PER_BLOCK)
    args = (x, w, b, out, mean, rstd, np.int32(n), np.int32(c), np.float32(1e-5))
    _run(cpu_kernels["layernorm_forward"], grid, threads, *args)
    x64 = x.astype(np.float64)
    ref, cache = layernorm_forward(x64, w.astype(np.float64), b.astype(np.float64))
    _close32(out, ref, f"layernorm_forward {shape}")
    _close32(rstd, cache.rstd[:, 0], f"layernorm_forward rstd {shape}")
    emu_out, emu_mean, emu_rstd = fe.layernorm_forward_emulated(x, w, b)
    np.testing.assert_allclose(out, emu_out, rtol=2e-6, atol=2e-6)  # same order of sums

    dx = _nan(shape)
    _run(
        cpu_kernels["layernorm_backward_dx"],
        grid,
        threads,
        *(dout, x, w, mean, rstd, dx, np.int32(n), np.int32(c)),
    )
    chunks = math.ceil(n / fe.LN_DWDB_ROWS)
    dw_partial, db_partial = _nan((chunks, c)), _nan((chunks, c))
    _run(
        cpu_kernels["layernorm_backward_dwdb"],
        (math.ceil(c / 32), chunks),
        32 * fe.LN_DWDB_WARPS,
        *(dout, x, mean, rstd, dw_partial, db_partial, np.int32(n), np.int32(c)),
    )
    ref_dx, ref_dw, ref_db = layernorm_backward(dout.astype(np.float64), cache)
    _close32(dx, ref_dx, f"layernorm dx {shape}")
    _close32(dw_partial.sum(axis=0), ref_dw, f"layernorm dw {shape}")
    _close32(db_partial.sum(axis=0), ref_db, f"layernorm db {shape}")
    _, emu_dw, emu_db = fe.layernorm_backward_emulated(dout, x, w, emu_mean, emu_rstd)
    np.testing.assert_allclose(dw_partial.sum(axis=0), emu_dw, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("n, blocks", [(1, 1), (1000, 4), (3000, 2)])  # 1 to 6 passes a thread
def test_kernel7_gelu_on_cpu_threads(cpu_kernels, n, blocks):
    from minireason.nn.layers import gelu_backward, gelu_forward

    rng = np.random.default_rng(n)
    x, dout = _f32(rng.standard_normal(n) * 3, rng.standard_normal(n))
    out, dx = _nan(n), _nan(n)
    _run(cpu_kernels["gelu_forward"], (blocks, 1), fe.GELU_THREADS, x, out, np.int64(n))
    _run(cpu_kernels["gelu_backward"], (blocks, 1), fe.GELU_THREADS, x, dout, dx, np.int64(n))
    ref, cache = gelu_forward(x.astype(np.float64))
    _close32(out, ref, f"gelu_forward n={n}")
    _close32(dx, gelu_backward(dout.astype(np.float64), cache), f"gelu_backward n={n}")
    _close32(out, fe.gelu_forward_emulated(x), "gelu_forward vs emulation")


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 3), (37, 257), (9, 4096)])
def test_kernel8_cross_entropy_on_cpu_threads(cpu_kernels, shape):
    from minireason.nn.layers import cross_entropy_backward, cross_entropy_forward, token_weights

    n, v = shape
    rng = np.random.default_rng(n * v)
    (logits,) = _f32(rng.standard_normal(shape) * 8)
    targets = rng.integers(0, v, n).astype(np.int64)
    mask = (rng.random(n) < 0.7).astype(np.int64)
    mask[-1] = 1
    lse, nll = _nan(n), _nan(n)
    grid, threads = _rows_launch(n, fe.CE_ROWS_PER_BLOCK)
    _run(
        cpu_kernels["cross_entropy_forward"],
        grid,
        threads,
        *(logits, targets, lse, nll, np.int32(n), np.int32(v)),
    )
    ref_loss, cache = cross_entropy_forward(logits.astype(np.float64), targets, mask)
    _close32(nll, cache.nll, f"cross_entropy nll {shape}")
    weights = token_weights(np, mask, n, np.float32)
    _close32((nll * weights).sum(), ref_loss, f"cross_entropy loss {shape}")
    dlogits = _nan(shape)
    _run(
        cpu_kernels["cross_entropy_backward"],
        grid,
        threads,
        *(logits, targets, weights, lse, dlogits, np.int32(n), np.int32(v)),
    )
    _close32(dlogits, cross_entropy_backward(cache), f"cross_entropy dlogits {shape}")
    assert np.all(dlogits[mask == 0] == 0)


@pytest.mark.slow
@pytest.mark.parametrize("decay", [1.0, 0.9997])
def test_kernel9_adamw_on_cpu_threads(cpu_kernels, decay):
    from minireason.nn.optim import adamw_update

    rng = np.random.default_rng(8)
    shape, b1, b2 = (33, 70), 0.9, 0.95
    p, m, v = _f32(rng.standard_normal(shape), rng.standard_normal(shape), rng.random(shape))
    p_ref, m_ref, v_ref = p.copy(), m.copy(), v.copy()
    for t, blocks in ((1, 10), (2, 3)):  # the second step: three passes per thread
        (g,) = _f32(rng.standard_normal(shape))
        hyper = dict(v_correction=1 / np.sqrt(1 - b2**t), eps=1e-8, step_size=2e-3 / (1 - b1**t))
        adamw_update(p_ref, g, m_ref, v_ref, b1=b1, b2=b2, decay=decay, **hyper)
        _run(
            cpu_kernels["adamw_update"],
            (blocks, 1),
            fe.ADAMW_THREADS,
            *(p, g, m, v, np.int64(p.size), b1, 1 - b1, b2, 1 - b2, decay),
            *(hyper["v_correction"], hyper["eps"], hyper["step_size"]),
        )
    for name, got, ref in (("p", p, p_ref), ("m", m, m_ref), ("v", v, v_ref)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6, err_msg=f"adamw {name}")


# --------------------------------------------------------------------------- bench kernels, host side


def test_bench_kernels_without_gpu_is_one_clear_line(capsys):
    from minireason import backend
    from minireason.cli import main

    ok, _ = backend.gpu_available()
    if ok:
        pytest.skip("a GPU is usable here; this checks the message where there is none")
    assert main(["bench", "kernels", "--seq-lens", "64"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bench kernels needs a CUDA GPU" in err and "Traceback" not in err


def test_bench_report_table_targets_and_plot(tmp_path):
    """The table, the target lines and the PNG from a result in run_kernel_bench's format."""
    from minireason.bench import kernels as kb

    rows = []
    for t in (256, 1024):
        for causal in (False, True):
            for version, tflops in (
                ("1 naive", 1.0),
                ("2 fused softmax", 4.0),
                ("3 flash", 6.0),
                (kb.BACKWARD_VERSION, 3.0),
                (kb.TORCH_VERSION, 10.0),
            ):
                rows.append(
                    {
                        "T": t,
                        "causal": causal,
                        "version": version,
                        "valid": True,
                        "max_abs_error": 1e-6,
                        "ms": 1.0,
                        "runs": 9,
                        "tflops": tflops,
                    }
                )
    rows.append(
        {"T": 4096, "causal": False, "version": "3 flash", "valid": False, "max_abs_error": 0.5}
    )
    result = {
        "environment": {
            "gpu": "TEST GPU",
            "date": "d",
            "cupy": "c",
            "cuda_runtime": 1,
            "torch": "t",
        },
        "config": {"batch": 8, "heads": 12, "head_dim": 64, "max_runs": 9, "warmup": 1},
        "results": rows,
        "not_measured": [{"T": 4096, "causal": True}],
    }
    table = kb.format_table(result)
    assert "| 1024 | yes | 3 flash | 1.000 | 6.00 | 6.0 | 0.60 | yes (1.0e-06) |" in table
    assert "| 4096 | no | 3 flash | not timed | not timed |" in table and "NO (5.0e-01)" in table
    assert "T=1024, causal=no: 0.60 x torch (met); 6.0 x kernel 1 (met)" in table
    assert "| 4096 | yes | all | not measured (time limit) |" in table
    written = kb.write_outputs(result, tmp_path, tmp_path / "r.json")
    assert [p.name for p in written] == ["kernel_bench.md", "r.json", "kernel_bench.png"]
    assert (tmp_path / "kernel_bench.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_gpu_train_without_gpu_is_one_clear_line(capsys, tmp_path):
    from minireason import backend
    from minireason.cli import main

    ok, _ = backend.gpu_available()
    if ok:
        pytest.skip("a GPU is usable here; this checks the message where there is none")
    assert main(["bench", "gpu-train", "--steps", "1", "--out-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bench gpu-train needs a CUDA GPU" in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_bench_gpu_train_report_targets_and_plot(tmp_path):
    """The table, the 2x target lines, the probes and the PNG from a result in
    run_gpu_train_bench's format (one failed variant included)."""
    from minireason.bench import gpu_train as gt

    rows = []
    for config, torch_ms in (("reference", 6.5), ("wide", 7.7)):
        for variant, ms in (("cublas", 30.0), ("flash", 12.0), ("flash + fused", 10.0)):
            rows.append(
                {"config": config, "variant": variant, "median_ms": ms, "p25_ms": ms - 1,
                 "p75_ms": ms + 1, "first_loss": 8.3}
            )  # fmt: skip
        rows.append({"config": config, "variant": "cublas + fused", "error": "KernelError: x"})
        rows.append(
            {"config": config, "variant": gt.TORCH_VARIANT, "median_ms": torch_ms,
             "p25_ms": torch_ms, "p75_ms": torch_ms, "first_loss": 8.3}
        )  # fmt: skip
    result = {
        "environment": {
            "gpu": "TEST GPU",
            "date": "d",
            "cupy": "c",
            "cuda_runtime": 1,
            "torch": "t",
        },
        "config": {"steps": 20, "warmup": 3},
        "results": rows,
        "probes": [
            {
                "shape": (16, 4, 128, 64),
                "cublas_ms": 0.5,
                "flash_ms": 0.4,
                "choice": "flash",
                "error": None,
            }
        ],  # fmt: skip
        "torch": "measured",
    }
    table = gt.format_table(result)
    assert "| reference | flash + fused | 10.00 | 9.00-11.00 | 1.54 | 8.30000 |" in table
    assert "| wide | cublas + fused | failed: KernelError: x | | | |" in table
    assert "- reference: best is flash + fused, 1.54 x torch (met)" in table
    assert "- wide: best is flash + fused, 1.30 x torch (met)" in table
    assert "heads (16, 4, 128, 64): cuBLAS 0.5 ms, flash 0.4 ms -> flash" in table
    written = gt.write_outputs(result, tmp_path, tmp_path / "g.json")
    assert [p.name for p in written] == ["gpu_train_bench.md", "g.json", "gpu_train_bench.png"]
    assert (tmp_path / "gpu_train_bench.png").read_bytes()[:4] == b"\x89PNG"
    gt.check_outputs(tmp_path)  # its own files may be replaced
    (tmp_path / "gpu_train_bench.md").write_text("my notes")
    with pytest.raises(ValueError, match="not a GPU training-step table"):
        gt.check_outputs(tmp_path)


def test_gpu_check_script_parses_and_stops_cleanly_without_a_gpu(tmp_path):
    """kernels/gpu_check.sh: bash syntax; without a GPU it writes its environment, log and
    summary, runs no part, and exits 2 saying why."""
    from minireason import backend

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not found")
    script = KERNEL_DIR / "gpu_check.sh"
    assert subprocess.run([bash, "-n", str(script)], capture_output=True).returncode == 0
    if backend.gpu_available()[0]:
        pytest.skip("a GPU is usable here: the script would run every part")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([bash, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no usable GPU, nothing run" in done.stdout
    summary = (tmp_path / "summary.md").read_text()
    for part in ("tests", "kernels", "train", "ncu", "cpu"):
        assert f"| {part} | skipped: no usable GPU |" in summary
    assert {p.name for p in tmp_path.iterdir()} == {
        "environment.txt",
        "gpu_check.log",
        "summary.md",
    }


def test_attention_flops_counts():
    from minireason.bench.kernels import attention_flops

    assert attention_flops(8, 12, 1024, 64, causal=False) == 4 * 8 * 12 * 1024**2 * 64
    assert attention_flops(8, 12, 1024, 64, causal=True) == 2 * 8 * 12 * 1024**2 * 64
    assert attention_flops(1, 1, 10, 2, causal=False, backward=True) == 2.5 * 4 * 100 * 2


# --------------------------------------------------------------------------- the launchers, on CPU threads


class _FakeFunction:
    """A compiled kernel as CuPy hands it out, launching on CPU threads instead."""

    def __init__(self, launch, name):
        self.launch, self.name = launch, name
        self.max_dynamic_shared_size_bytes = cuda_attention.DEFAULT_SHARED_BYTES

    def __call__(self, grid, block, args, shared_mem=0):
        assert shared_mem <= self.max_dynamic_shared_size_bytes, "launched without the opt-in"
        assert shared_mem <= 4 * 64 * 1024, "more shared memory than cpu_threads provides"
        _run(self.launch, (*grid, 1)[:2], block[0], *args)


@pytest.fixture
def launchers_on_cpu(cpu_kernels, monkeypatch):
    """minireason.gpu.cuda_attention (and through it cuda_fused) with NumPy arrays standing in
    for CuPy's, kernels on CPU threads.

    Checks the launchers' own logic (argument order, grids, shared-memory sizes and opt-in,
    masks turned into a bias, leading dims flattened) without a GPU; CuPy's API itself is
    only exercised by tests/test_kernels_gpu.py.
    """
    import types

    class Module:
        def __init__(self, code, options=()):
            self.code = code

        def compile(self):
            pass

        def get_function(self, name):
            assert f"void {name}(" in self.code or f") {name}(" in self.code
            return _FakeFunction(cpu_kernels[name], name)

    fake = types.ModuleType("fake_cupy")
    error = type("FakeCudaError", (Exception,), {})
    fake.__dict__.update(
        RawModule=Module,
        ascontiguousarray=np.ascontiguousarray,
        empty=np.empty,
        empty_like=np.empty_like,
        matmul=np.matmul,
        where=np.where,
        broadcast_to=np.broadcast_to,
        cuda=types.SimpleNamespace(
            compiler=types.SimpleNamespace(CompileException=error),
            driver=types.SimpleNamespace(CUDADriverError=error),
            runtime=types.SimpleNamespace(CUDARuntimeError=error, deviceSynchronize=lambda: None),
            Device=lambda: types.SimpleNamespace(
                attributes={"MaxSharedMemoryPerBlockOptin": 227 * 1024}
            ),
        ),
    )

    def gpu_float32(name, a):
        if a.dtype != np.float32:
            raise ValueError(f"{name} must be float32 for the CUDA kernels, got {a.dtype}")
        return fake

    monkeypatch.setattr(cuda_attention, "array_module", lambda a: fake)
    monkeypatch.setattr(cuda_attention, "gpu_float32", gpu_float32)
    return cuda_attention


@pytest.mark.slow
def test_forward_launchers_1_and_2(launchers_on_cpu):
    from minireason.nn.attention import attention_forward

    ca = launchers_on_cpu
    rng = np.random.default_rng(12)
    q, k, v = _f32(*(rng.standard_normal((2, 1, t, 16)) for t in (20, 27, 27)))
    mask = rng.random((20, 27)) < 0.6
    mask[3] = False
    (float_mask,) = _f32(
        np.where(rng.random((2, 1, 20, 27)) < 0.2, -np.inf, rng.standard_normal((2, 1, 20, 27)))
    )
    for name, kw in (
        ("causal", {"is_causal": True}),
        ("scale", {"scale": 0.3}),
        ("bool mask", {"attn_mask": mask}),
        ("float mask", {"attn_mask": float_mask}),
    ):
        ref, _ = attention_forward(*(a.astype(np.float64) for a in (q, k, v)), **kw)
        for launch in (ca.attention_forward1_naive, ca.attention_forward2_fused):
            out = _nan(ref.shape)
            assert launch(q, k, v, out=out, **kw) is out
            _close32(out, ref, f"{launch.__name__} {name}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "kernel, head_dim, seq, seed",
    [
        (3, 24, (40, 70, 70, 40), 13),
        (3, 128, (40, 70, 70, 40), 13),  # over 48 KiB of shared memory, opt-in
        (5, 24, (70, 70, 70, 70), 14),  # 16-byte copies
        (5, 7, (70, 70, 70, 70), 14),  # 4-byte copies
        (5, 100, (70, 70, 70, 70), 14),  # the d128 kernel
    ],
)
def test_flash_forward_launchers_3_and_5_then_backward_4(
    launchers_on_cpu, kernel, head_dim, seq, seed
):
    from minireason.nn.attention import attention_backward, attention_forward

    ca = launchers_on_cpu
    forward = {3: ca.attention_forward3_flash, 5: ca.attention_forward5_flash}[kernel]
    rng = np.random.default_rng(seed)
    q, k, v, dout = _f32(*(rng.standard_normal((2, 1, t, head_dim)) for t in seq))
    for causal in (False, True):
        ref, cache = attention_forward(*(a.astype(np.float64) for a in (q, k, v)), is_causal=causal)
        out, lse = forward(q, k, v, is_causal=causal)
        _close32(out, ref, f"kernel {kernel} causal={causal}")
        grads = ca.attention_backward4_flash(dout, q, k, v, out, lse, is_causal=causal)
        ref_grads = attention_backward(dout.astype(np.float64), cache)[:3]
        for name, got, r in zip(("dq", "dk", "dv"), grads, ref_grads):
            _close32(got, r, f"kernel 4 after {kernel} {name} causal={causal}")


@pytest.mark.slow
def test_fused_launchers_6_to_9(launchers_on_cpu):
    from minireason.nn import layers
    from minireason.nn.optim import adamw_update

    cf = cuda_fused
    rng = np.random.default_rng(15)
    x, dout = _f32(rng.standard_normal((45, 40)), rng.standard_normal((45, 40)))
    w, b = _f32(rng.standard_normal(40), rng.standard_normal(40))
    out, mean, rstd = cf.layernorm_forward6(x, w, b)
    ref, cache = layers.layernorm_forward(*(a.astype(np.float64) for a in (x, w, b)))
    _close32(out, ref, "layernorm_forward6")
    for name, got, r in zip(
        ("dx", "dw", "db"),
        cf.layernorm_backward6(dout, x, w, mean, rstd),
        layers.layernorm_backward(dout.astype(np.float64), cache),
    ):
        _close32(got, r, f"layernorm_backward6 {name}")

    ref, cache = layers.gelu_forward(x.astype(np.float64))
    _close32(cf.gelu_forward7(x), ref, "gelu_forward7")
    _close32(cf.gelu_backward7(dout, x), layers.gelu_backward(dout.astype(np.float64), cache), "")

    targets = rng.integers(0, 40, 45)
    mask = (rng.random(45) < 0.5).astype(np.int64)
    mask[0] = 1
    ref_loss, cache = layers.cross_entropy_forward(x.astype(np.float64), targets, mask)
    lse, nll = cf.cross_entropy_forward8(x, targets)
    weights = layers.token_weights(np, mask, 45, np.float32)
    _close32((nll * weights).sum(), ref_loss, "cross_entropy_forward8")
    dlogits = cf.cross_entropy_backward8(x, targets, weights, lse)
    _close32(dlogits, layers.cross_entropy_backward(cache), "cross_entropy_backward8")

    p, m, v = _f32(rng.standard_normal((7, 9)), np.zeros((7, 9)), np.zeros((7, 9)))
    (g,) = _f32(rng.standard_normal((7, 9)))
    p_ref, m_ref, v_ref = p.copy(), m.copy(), v.copy()
    hyper = dict(b1=0.9, b2=0.95, decay=0.999, v_correction=4.47, eps=1e-8, step_size=0.01)
    cf.adamw_update9(p, g, m, v, **hyper)
    adamw_update(p_ref, g, m_ref, v_ref, **hyper)
    for name, got, r in (("p", p, p_ref), ("m", m, m_ref), ("v", v, v_ref)):
        np.testing.assert_allclose(got, r, rtol=1e-6, atol=1e-6, err_msg=f"adamw_update9 {name}")

    with pytest.raises(ValueError, match="must have shape"):
        cf.layernorm_forward6(x, w[:5], b)
    with pytest.raises(ValueError, match="targets must be"):
        cf.cross_entropy_forward8(x, targets[:3])


# --------------------------------------------------------------------------- the model's GPU path, on CPU threads


@pytest.mark.slow
@pytest.mark.parametrize("flash, fused", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("copy", [False, True], ids=["plain", "copy-head"])
def test_model_gpu_ops_on_cpu_threads(launchers_on_cpu, monkeypatch, flash, fused, copy):
    """A training step of a small GPT through minireason.gpu.model_kernels' Ops (flash
    attention 3 + 4 and / or the fused kernels 6-8, run on CPU threads) against the same step
    through NumPy's own layers: the wiring of every forward/backward pair, its caches and the
    copy head's use of the loss cache, without a GPU."""
    from minireason.gpu import model_kernels
    from minireason.nn.model import GPT, GPTConfig

    config = GPTConfig(
        vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, dtype="float32", copy=copy
    )
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 64, size=(2, 16))
    targets = rng.integers(0, 64, size=(2, 16))
    mask = (rng.random((2, 16)) < 0.5).astype(np.int64)
    mask[0, 0] = 1
    reference = GPT(config)
    kernels = GPT(config)
    ops = model_kernels.OPS[(flash, fused)]
    monkeypatch.setattr(kernels, "_ops", lambda B, T, need_weights: ops)
    for all_logits in (True, False):  # False: the head and the loss see the masked rows only
        _, ref_loss = reference.forward(idx, targets, mask, all_logits=all_logits)
        ref_grads = reference.backward()
        _, loss = kernels.forward(idx, targets, mask, all_logits=all_logits)
        assert kernels._cache.ops is ops
        grads = kernels.backward()
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        for name, ref in ref_grads.items():
            _close32(grads[name], ref, f"grad {name} flash={flash} fused={fused}")
    if flash:
        assert kernels.attention_weights() == [None] * config.n_layer


@pytest.mark.slow
def test_fused_adamw_through_the_optimizer_choice(launchers_on_cpu, monkeypatch):
    from minireason import backend
    from minireason.gpu import model_kernels
    from minireason.nn.optim import adamw_update

    rng = np.random.default_rng(1)
    p, g = _f32(rng.standard_normal((5, 40)), rng.standard_normal((5, 80))[:, ::2])  # g strided
    m, v = np.zeros_like(p), np.zeros_like(p)
    hyper = dict(b1=0.9, b2=0.95, decay=0.99, v_correction=4.47, eps=1e-8, step_size=0.01)
    assert model_kernels.adamw_update_for(p) is adamw_update  # not asked for
    monkeypatch.setattr(backend, "_fused", True)
    update = model_kernels.adamw_update_for(p)
    assert update is not adamw_update
    assert model_kernels.adamw_update_for(p.astype(np.float64)) is adamw_update
    p_ref, m_ref, v_ref = p.copy(), m.copy(), v.copy()
    adamw_update(p_ref, g, m_ref, v_ref, **hyper)
    update(p, g, m, v, **hyper)
    for got, ref in ((p, p_ref), (m, m_ref), (v, v_ref)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
