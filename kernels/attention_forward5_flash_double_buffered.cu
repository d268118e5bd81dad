// Kernel 5: kernel 3 with its key/value tiles double-buffered (cp.async, sm_80+) and twice
// the query rows per thread.
//
// Mirrors minireason.gpu.flash_emulation.flash_forward5_emulated: the algorithm is kernel 3's
// (the same online softmax, masks, saved log-sum-exp); what changes is the schedule.
//
// 1. Double buffering. The profile of kernel 3 (kernels/README.md) shows its warps waiting on
//    global loads half of the time: each tile's K and V were loaded only after the previous
//    tile was done with. Here there are two K/V buffers in shared memory. While the block
//    computes on tile t (buffer t & 1), the asynchronous copies of tile t + 1 into the other
//    buffer are in flight (cp.async: global -> shared without going through registers, so
//    the copy costs the thread a few issue slots and no waiting). One barrier per tile:
//
//        issue tile 0 -> buffer 0
//        for each tile t:
//            wait for this thread's copies; __syncthreads()   tile t is in buffer t & 1, and
//                                                             every warp is done with tile t - 1
//            issue tile t + 1 -> buffer (t + 1) & 1           (the buffer of tile t - 1)
//            scores, online softmax, P V on buffer t & 1
//
// 2. More rows per thread. Each warp owns 16 query rows (kernel 3: 8), so the block's tile is
//    FLASH5_BLOCK_M = 64 rows, and each K or V value a lane reads from shared memory feeds 16
//    multiply-adds instead of 8 (shared-memory bandwidth, not arithmetic, bounds these loops).
//    To keep the accumulators in registers, the head columns a lane owns are a template
//    parameter: COLS = 2 (head_dim <= 64) or 4 (head_dim <= 128), one kernel each.
//
// Copies: when head_dim is a multiple of 4 and q, k, v are 16-byte aligned (use_16 = 1, the
// launcher checks), each cp.async moves a float4; otherwise single floats. Rows past Tk and
// columns past D are zero-filled by the copy itself (source size 0).
//
// Layout as kernel 3: q, k, v, out (B, T, D) float32 contiguous, B = batch*heads, 1 <= D <=
// 128; lse (B, Tq). Shared memory: Q (64, D4), K[2] (32, D4 + 4), V[2] (32, D4), P (64, 32),
// D4 = D rounded up to a multiple of 4: flash5_shared_bytes(D) on the Python side (57 KiB at
// D = 64, 105 KiB at D = 128: over the default 48 KiB, the launcher opts in).
// Launch: grid (ceil(Tq / 64), B), block 128; attention_forward5_flash_d64 for D <= 64,
// attention_forward5_flash_d128 for 64 < D <= 128.

#ifndef INFINITY  // NVRTC (which CuPy uses) has no <math.h>
#define INFINITY __int_as_float(0x7f800000)
#endif

#define FLASH5_BLOCK_M 64
#define FLASH5_BLOCK_N 32
#define FLASH5_THREADS 128
#define FLASH5_WARPS (FLASH5_THREADS / 32)                  // 4
#define ROWS_PER_WARP (FLASH5_BLOCK_M / FLASH5_WARPS)         // 16

#ifndef CUDA_ON_CPU  // kernels/cpu_threads defines its own (copies on CPU threads)
// cp.async of 4 or 16 bytes from global to shared memory; bytes past src_bytes are zeros.
__device__ __forceinline__ void cp_async4(float* dst, const float* src, int src_bytes) {
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src),
                 "r"(src_bytes));
}
__device__ __forceinline__ void cp_async16(float* dst, const float* src, int src_bytes) {
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                 "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Wait until every cp.async this thread issued has landed (other threads' need a barrier).
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}
#endif

__device__ float warp_max(float value) {
    for (int offset = 16; offset > 0; offset /= 2)
        value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
    return value;
}

__device__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset /= 2)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

// _tile_mask of the emulation, for one (row, col).
__device__ bool may_attend(int row, int col, int Tq, int Tk, int is_causal) {
    return row < Tq && col < Tk && !(is_causal && col > row);
}

// Issue the copies of key/value tile n0 into Kb (stride k_stride) and Vb (stride D4): a row
// per warp, lanes over the row's floats (or float4s); rows past Tk and columns past D are
// zero-filled. _load_tile(k, n0, BLOCK_N) and _load_tile(v, n0, BLOCK_N) of the emulation.
__device__ __forceinline__ void issue_kv_tile(float* Kb, float* Vb, const float* k_b,
                                              const float* v_b, int n0, int Tk, int D, int D4,
                                              int k_stride, int use_16, int warp, int lane) {
#pragma unroll 1
    for (int c = warp; c < FLASH5_BLOCK_N; c += FLASH5_WARPS) {
        const bool row_ok = n0 + c < Tk;
        const long row = row_ok ? (long)(n0 + c) * D : 0;  // a valid address when zero-filling
        if (use_16) {  // D == D4, a multiple of 4
#pragma unroll 1
            for (int e = 4 * lane; e < D4; e += 128) {
                cp_async16(&Kb[c * k_stride + e], k_b + row + e, row_ok ? 16 : 0);
                cp_async16(&Vb[c * D4 + e], v_b + row + e, row_ok ? 16 : 0);
            }
        } else {
#pragma unroll 1
            for (int e = lane; e < D4; e += 32) {
                const bool ok = row_ok && e < D;
                cp_async4(&Kb[c * k_stride + e], k_b + (ok ? row + e : 0), ok ? 4 : 0);
                cp_async4(&Vb[c * D4 + e], v_b + (ok ? row + e : 0), ok ? 4 : 0);
            }
        }
    }
    cp_async_commit();
}

template <int COLS>
__device__ __forceinline__ void flash5(const float* __restrict__ q, const float* __restrict__ k,
                                       const float* __restrict__ v, float* __restrict__ out,
                                       float* __restrict__ lse, int Tq, int Tk, int D,
                                       float scale, int is_causal, int use_16) {
    extern __shared__ float4 shared4[];                       // float4: 16-byte aligned
    const int D4 = (D + 3) / 4 * 4;
    const int k_stride = D4 + 4;                              // lanes read different banks
    const int k_tile = FLASH5_BLOCK_N * k_stride, v_tile = FLASH5_BLOCK_N * D4;
    float* Qs = reinterpret_cast<float*>(shared4);            // (BLOCK_M, D4)
    float* Ks = Qs + FLASH5_BLOCK_M * D4;                     // 2 x (BLOCK_N, D4 + 4)
    float* Vs = Ks + 2 * k_tile;                              // 2 x (BLOCK_N, D4)
    float* Ps = Vs + 2 * v_tile;                              // (BLOCK_M, BLOCK_N)

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int m0 = blockIdx.x * FLASH5_BLOCK_M;
    const long b = blockIdx.y;
    const float* q_b = q + b * Tq * D;
    const float* k_b = k + b * Tk * D;
    const float* v_b = v + b * Tk * D;
    const int n_end = is_causal ? min(Tk, m0 + FLASH5_BLOCK_M) : Tk;  // _key_tile_end

    issue_kv_tile(Ks, Vs, k_b, v_b, 0, Tk, D, D4, k_stride, use_16, warp, lane);

    // The Q tile with ordinary loads while the first K/V tile is in flight; zero past Tq and D.
#pragma unroll 1
    for (int r = warp; r < FLASH5_BLOCK_M; r += FLASH5_WARPS) {
        const bool row_ok = m0 + r < Tq;
        const float* src = q_b + (long)(m0 + r) * D;
        for (int e = lane; e < D4; e += 32) Qs[r * D4 + e] = (row_ok && e < D) ? src[e] : 0.0f;
    }

    float m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][COLS];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < COLS; c++) acc[r][c] = 0.0f;
    }

    int buf = 0;
    for (int n0 = 0; n0 < n_end; n0 += FLASH5_BLOCK_N, buf ^= 1) {
        cp_async_wait_all();
        __syncthreads();  // tile n0 is in buffer buf for all, buffer buf ^ 1 free, Qs loaded
        if (n0 + FLASH5_BLOCK_N < n_end)
            issue_kv_tile(Ks + (buf ^ 1) * k_tile, Vs + (buf ^ 1) * v_tile, k_b, v_b,
                          n0 + FLASH5_BLOCK_N, Tk, D, D4, k_stride, use_16, warp, lane);
        const float* Kt = Ks + buf * k_tile;
        const float* Vt = Vs + buf * v_tile;

        // S = scale * Q_tile K_tile^T: this lane's key, this warp's 16 rows
        float s[ROWS_PER_WARP];
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++) s[r] = 0.0f;
        for (int e = 0; e < D4; e += 4) {
            float4 k4 = *reinterpret_cast<const float4*>(&Kt[lane * k_stride + e]);
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++) {
                const float* q_row = Qs + (warp * ROWS_PER_WARP + r) * D4;
                float4 q4 = *reinterpret_cast<const float4*>(q_row + e);
                s[r] += q4.x * k4.x + q4.y * k4.y + q4.z * k4.z + q4.w * k4.w;
            }
        }

        // online softmax: m_new, alpha, P, l, and the rescaled accumulator
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++) {
            int row = m0 + warp * ROWS_PER_WARP + r;
            float score = may_attend(row, n0 + lane, Tq, Tk, is_causal) ? s[r] * scale : -INFINITY;
            float m_new = fmaxf(m[r], warp_max(score));
            float m_safe = m_new == -INFINITY ? 0.0f : m_new;  // no key yet: avoid -inf - -inf
            float alpha = expf(m[r] - m_safe);
            float p = expf(score - m_safe);
            l[r] = alpha * l[r] + warp_sum(p);
#pragma unroll
            for (int c = 0; c < COLS; c++) acc[r][c] *= alpha;
            m[r] = m_new;
            Ps[(warp * ROWS_PER_WARP + r) * FLASH5_BLOCK_N + lane] = p;
        }
        __syncwarp();  // a warp reads back only the P rows it wrote

        // acc += P V_tile, four keys j .. j+3 at a time: this lane's V values for them first,
        // then each row's four P values (one float4, a broadcast)
        for (int j = 0; j < FLASH5_BLOCK_N; j += 4) {
            float vv[4][COLS];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int c = 0; c < COLS; c++) {
                    int e = lane + 32 * c;
                    vv[i][c] = e < D ? Vt[(j + i) * D4 + e] : 0.0f;
                }
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++) {
                float4 p4 = *reinterpret_cast<const float4*>(
                    Ps + (warp * ROWS_PER_WARP + r) * FLASH5_BLOCK_N + j);
#pragma unroll
                for (int c = 0; c < COLS; c++)
                    acc[r][c] +=
                        p4.x * vv[0][c] + p4.y * vv[1][c] + p4.z * vv[2][c] + p4.w * vv[3][c];
            }
        }
    }

    // out = acc / l, lse = m + log(l); a row with no key gets zeros and -inf
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        int row = m0 + warp * ROWS_PER_WARP + r;
        if (row >= Tq) continue;
        float inv_l = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
#pragma unroll
        for (int c = 0; c < COLS; c++) {
            int e = lane + 32 * c;
            if (e < D) out[(b * Tq + row) * D + e] = acc[r][c] * inv_l;
        }
        if (lane == 0) lse[b * Tq + row] = l[r] > 0.0f ? m[r] + logf(l[r]) : -INFINITY;
    }
}

// __launch_bounds__: the blocks an SM can hold given their shared memory (H100: 3 of 57 KiB,
// 2 of 105 KiB), which leaves ptxas up to 170 / 255 registers a thread: no spills.
extern "C" __global__ void __launch_bounds__(FLASH5_THREADS, 3) attention_forward5_flash_d64(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    float* __restrict__ out, float* __restrict__ lse, int Tq, int Tk, int D, float scale,
    int is_causal, int use_16) {
    flash5<2>(q, k, v, out, lse, Tq, Tk, D, scale, is_causal, use_16);
}

extern "C" __global__ void __launch_bounds__(FLASH5_THREADS, 2) attention_forward5_flash_d128(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    float* __restrict__ out, float* __restrict__ lse, int Tq, int Tk, int D, float scale,
    int is_causal, int use_16) {
    flash5<4>(q, k, v, out, lse, Tq, Tk, D, scale, is_causal, use_16);
}
