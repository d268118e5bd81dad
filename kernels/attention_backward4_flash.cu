// Kernel 4: the backward of kernel 3, recomputing the softmax from the saved log-sum-exp.
//
// Mirrors minireason.flash_emulation.flash_backward_emulated, in its three steps, one
// kernel each (the same 32 x 32 tiles, loop orders and masks as the emulation):
//
//   flash_backward_delta   delta[i] = sum_d dout[i, d] * out[i, d]      (flash_backward_delta)
//   flash_backward_dkdv    one block per key tile, looping over query tiles (step 2):
//                          P = exp(scale * Q K^T - lse), dP = dout V^T, dS = P * (dP - delta),
//                          dV += P^T dout, dK += dS^T Q; dK *= scale at the end
//   flash_backward_dq      one block per query tile, looping over key tiles (step 3):
//                          the same P, dS; dQ += dS K; dQ *= scale at the end
//
// No atomics: every element of dq, dk, dv is written once, by the block that owns its tile.
// The price is computing P and dS twice (steps 2 and 3).
//
// Thread mapping (128 threads = 4 warps, as in kernel 3). In dkdv, warp w owns the key
// tile's keys 8w .. 8w+7; while computing P and dS, lane i is the query row (so each Q and
// dout value read from shared memory feeds 8 keys); while accumulating, lane owns head
// columns d = lane + 32c. dq is the transpose: warp w owns query rows 8w .. 8w+7, lane is
// the key while computing dS and the head column while accumulating.
//
// Layout: q, out, dout, dq (B, Tq, D); k, v, dk, dv (B, Tk, D); lse, delta (B, Tq); all
// float32 contiguous, 1 <= D <= 128. Launches: delta grid ceil(B*Tq/4), block 128; dkdv
// grid (ceil(Tk/32), B); dq grid (ceil(Tq/32), B); both block 128 with dynamic shared
// memory flash_dkdv_shared_bytes(D) / flash_dq_shared_bytes(D) (python side).

#ifndef INFINITY  // NVRTC (which CuPy uses) has no <math.h>
#define INFINITY __int_as_float(0x7f800000)
#endif

#define FLASH_BLOCK_M 32
#define FLASH_BLOCK_N 32
#define FLASH_THREADS 128
#define PER_WARP 8        // keys (dkdv) or query rows (dq) per warp
#define COLS_PER_LANE 4   // head_dim <= 128
#define DELTA_ROWS_PER_BLOCK 4

__device__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset /= 2)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

__device__ bool may_attend(int row, int col, int Tq, int Tk, int is_causal) {
    return row < Tq && col < Tk && !(is_causal && col > row);
}

// _recompute_tile of the emulation, for one (row, col): P from the saved lse (zero where
// masked, or for a row with no key, lse = -inf), and dS = P * (dP - delta).
__device__ void recompute_p_ds(float s, float dp, float row_lse, float row_delta, bool ok,
                               float scale, float* p, float* ds) {
    bool live = ok && row_lse != -INFINITY;
    *p = live ? expf(s * scale - row_lse) : 0.0f;
    *ds = *p * (dp - row_delta);
}

extern "C" __global__ void flash_backward_delta(
    const float* __restrict__ dout, const float* __restrict__ out, float* __restrict__ delta,
    int rows, int D) {
    const int lane = threadIdx.x % 32;
    const long row = (long)blockIdx.x * DELTA_ROWS_PER_BLOCK + threadIdx.x / 32;
    if (row >= rows) return;
    float partial = 0.0f;
    for (int e = lane; e < D; e += 32) partial += dout[row * D + e] * out[row * D + e];
    float total = warp_sum(partial);
    if (lane == 0) delta[row] = total;
}

extern "C" __global__ void flash_backward_dkdv(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ dout, const float* __restrict__ lse,
    const float* __restrict__ delta, float* __restrict__ dk, float* __restrict__ dv,
    int Tq, int Tk, int D, float scale, int is_causal) {
    extern __shared__ float shared[];
    float* Ks = shared;                                   // (BLOCK_N, D)
    float* Vs = Ks + FLASH_BLOCK_N * D;                   // (BLOCK_N, D)
    float* Qs = Vs + FLASH_BLOCK_N * D;                   // (BLOCK_M, D + 1): lane = row
    float* dOs = Qs + FLASH_BLOCK_M * (D + 1);            // (BLOCK_M, D + 1)
    float* Ps = dOs + FLASH_BLOCK_M * (D + 1);            // (BLOCK_N, BLOCK_M): P^T
    float* dSs = Ps + FLASH_BLOCK_N * FLASH_BLOCK_M;      // (BLOCK_N, BLOCK_M): dS^T
    float* lse_s = dSs + FLASH_BLOCK_N * FLASH_BLOCK_M;   // (BLOCK_M)
    float* delta_s = lse_s + FLASH_BLOCK_M;               // (BLOCK_M)

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int n0 = blockIdx.x * FLASH_BLOCK_N;
    const long b = blockIdx.y;

    for (int idx = threadIdx.x; idx < FLASH_BLOCK_N * D; idx += blockDim.x) {
        int c = idx / D, e = idx % D;
        bool inside = n0 + c < Tk;
        Ks[idx] = inside ? k[(b * Tk + n0 + c) * D + e] : 0.0f;
        Vs[idx] = inside ? v[(b * Tk + n0 + c) * D + e] : 0.0f;
    }

    float dk_acc[PER_WARP][COLS_PER_LANE], dv_acc[PER_WARP][COLS_PER_LANE];
#pragma unroll
    for (int j = 0; j < PER_WARP; j++)
#pragma unroll
        for (int c = 0; c < COLS_PER_LANE; c++) dk_acc[j][c] = dv_acc[j][c] = 0.0f;

    const int m_start = is_causal ? (n0 / FLASH_BLOCK_M) * FLASH_BLOCK_M : 0;  // _query_tile_start
    for (int m0 = m_start; m0 < Tq; m0 += FLASH_BLOCK_M) {
        __syncthreads();  // the previous query tile is no longer read (and K, V are loaded)
        for (int idx = threadIdx.x; idx < FLASH_BLOCK_M * D; idx += blockDim.x) {
            int r = idx / D, e = idx % D;
            bool inside = m0 + r < Tq;
            Qs[r * (D + 1) + e] = inside ? q[(b * Tq + m0 + r) * D + e] : 0.0f;
            dOs[r * (D + 1) + e] = inside ? dout[(b * Tq + m0 + r) * D + e] : 0.0f;
        }
        const int r = threadIdx.x;
        if (r < FLASH_BLOCK_M) {
            bool inside = m0 + r < Tq;
            lse_s[r] = inside ? lse[b * Tq + m0 + r] : -INFINITY;
            delta_s[r] = inside ? delta[b * Tq + m0 + r] : 0.0f;
        }
        __syncthreads();

        // S[lane, j] and dP[lane, j] for this warp's keys j
        float s[PER_WARP], dp[PER_WARP];
#pragma unroll
        for (int j = 0; j < PER_WARP; j++) s[j] = dp[j] = 0.0f;
        for (int e = 0; e < D; e++) {
            float q_value = Qs[lane * (D + 1) + e];
            float do_value = dOs[lane * (D + 1) + e];
#pragma unroll
            for (int j = 0; j < PER_WARP; j++) {
                s[j] += q_value * Ks[(warp * PER_WARP + j) * D + e];
                dp[j] += do_value * Vs[(warp * PER_WARP + j) * D + e];
            }
        }
        const int row = m0 + lane;
#pragma unroll
        for (int j = 0; j < PER_WARP; j++) {
            int key = warp * PER_WARP + j;
            float p, ds;
            recompute_p_ds(s[j], dp[j], lse_s[lane], delta_s[lane],
                           may_attend(row, n0 + key, Tq, Tk, is_causal), scale, &p, &ds);
            Ps[key * FLASH_BLOCK_M + lane] = p;
            dSs[key * FLASH_BLOCK_M + lane] = ds;
        }
        __syncwarp();  // a warp reads back only its own keys' rows of P^T and dS^T

        // dV += P^T dout, dK += dS^T Q
        for (int i = 0; i < FLASH_BLOCK_M; i++) {
#pragma unroll
            for (int c = 0; c < COLS_PER_LANE; c++) {
                int e = lane + 32 * c;
                float do_value = e < D ? dOs[i * (D + 1) + e] : 0.0f;
                float q_value = e < D ? Qs[i * (D + 1) + e] : 0.0f;
#pragma unroll
                for (int j = 0; j < PER_WARP; j++) {
                    int key = warp * PER_WARP + j;
                    dv_acc[j][c] += Ps[key * FLASH_BLOCK_M + i] * do_value;
                    dk_acc[j][c] += dSs[key * FLASH_BLOCK_M + i] * q_value;
                }
            }
        }
    }

#pragma unroll
    for (int j = 0; j < PER_WARP; j++) {
        int key = n0 + warp * PER_WARP + j;
        if (key >= Tk) continue;
#pragma unroll
        for (int c = 0; c < COLS_PER_LANE; c++) {
            int e = lane + 32 * c;
            if (e < D) {
                dk[(b * Tk + key) * D + e] = scale * dk_acc[j][c];
                dv[(b * Tk + key) * D + e] = dv_acc[j][c];
            }
        }
    }
}

extern "C" __global__ void flash_backward_dq(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ dout, const float* __restrict__ lse,
    const float* __restrict__ delta, float* __restrict__ dq,
    int Tq, int Tk, int D, float scale, int is_causal) {
    extern __shared__ float shared[];
    float* Qs = shared;                                   // (BLOCK_M, D)
    float* dOs = Qs + FLASH_BLOCK_M * D;                  // (BLOCK_M, D)
    float* Ks = dOs + FLASH_BLOCK_M * D;                  // (BLOCK_N, D + 1): lane = key
    float* Vs = Ks + FLASH_BLOCK_N * (D + 1);             // (BLOCK_N, D + 1)
    float* dSs = Vs + FLASH_BLOCK_N * (D + 1);            // (BLOCK_M, BLOCK_N)

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int m0 = blockIdx.x * FLASH_BLOCK_M;
    const long b = blockIdx.y;

    for (int idx = threadIdx.x; idx < FLASH_BLOCK_M * D; idx += blockDim.x) {
        int r = idx / D, e = idx % D;
        bool inside = m0 + r < Tq;
        Qs[idx] = inside ? q[(b * Tq + m0 + r) * D + e] : 0.0f;
        dOs[idx] = inside ? dout[(b * Tq + m0 + r) * D + e] : 0.0f;
    }
    float row_lse[PER_WARP], row_delta[PER_WARP], dq_acc[PER_WARP][COLS_PER_LANE];
#pragma unroll
    for (int r = 0; r < PER_WARP; r++) {
        int row = m0 + warp * PER_WARP + r;
        row_lse[r] = row < Tq ? lse[b * Tq + row] : -INFINITY;
        row_delta[r] = row < Tq ? delta[b * Tq + row] : 0.0f;
#pragma unroll
        for (int c = 0; c < COLS_PER_LANE; c++) dq_acc[r][c] = 0.0f;
    }

    const int n_end = is_causal ? min(Tk, m0 + FLASH_BLOCK_M) : Tk;  // _key_tile_end
    for (int n0 = 0; n0 < n_end; n0 += FLASH_BLOCK_N) {
        __syncthreads();  // the previous key tile is no longer read (and Q, dout are loaded)
        for (int idx = threadIdx.x; idx < FLASH_BLOCK_N * D; idx += blockDim.x) {
            int c = idx / D, e = idx % D;
            bool inside = n0 + c < Tk;
            Ks[c * (D + 1) + e] = inside ? k[(b * Tk + n0 + c) * D + e] : 0.0f;
            Vs[c * (D + 1) + e] = inside ? v[(b * Tk + n0 + c) * D + e] : 0.0f;
        }
        __syncthreads();

        // S[r, lane] and dP[r, lane] for this warp's rows r
        float s[PER_WARP], dp[PER_WARP];
#pragma unroll
        for (int r = 0; r < PER_WARP; r++) s[r] = dp[r] = 0.0f;
        for (int e = 0; e < D; e++) {
            float k_value = Ks[lane * (D + 1) + e];
            float v_value = Vs[lane * (D + 1) + e];
#pragma unroll
            for (int r = 0; r < PER_WARP; r++) {
                s[r] += Qs[(warp * PER_WARP + r) * D + e] * k_value;
                dp[r] += dOs[(warp * PER_WARP + r) * D + e] * v_value;
            }
        }
#pragma unroll
        for (int r = 0; r < PER_WARP; r++) {
            int row = m0 + warp * PER_WARP + r;
            float p, ds;
            recompute_p_ds(s[r], dp[r], row_lse[r], row_delta[r],
                           may_attend(row, n0 + lane, Tq, Tk, is_causal), scale, &p, &ds);
            dSs[(warp * PER_WARP + r) * FLASH_BLOCK_N + lane] = ds;
        }
        __syncwarp();  // a warp reads back only its own rows of dS

        // dQ += dS K_tile
        for (int j = 0; j < FLASH_BLOCK_N; j++) {
#pragma unroll
            for (int c = 0; c < COLS_PER_LANE; c++) {
                int e = lane + 32 * c;
                float k_value = e < D ? Ks[j * (D + 1) + e] : 0.0f;
#pragma unroll
                for (int r = 0; r < PER_WARP; r++)
                    dq_acc[r][c] += dSs[(warp * PER_WARP + r) * FLASH_BLOCK_N + j] * k_value;
            }
        }
    }

#pragma unroll
    for (int r = 0; r < PER_WARP; r++) {
        int row = m0 + warp * PER_WARP + r;
        if (row >= Tq) continue;
#pragma unroll
        for (int c = 0; c < COLS_PER_LANE; c++) {
            int e = lane + 32 * c;
            if (e < D) dq[(b * Tq + row) * D + e] = scale * dq_acc[r][c];
        }
    }
}
