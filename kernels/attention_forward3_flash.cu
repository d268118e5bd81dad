// Kernel 3: tiled flash-attention forward with online softmax in shared memory.
//
// Mirrors minireason.flash_emulation.flash_forward_emulated step for step: the same tiles
// (FLASH_BLOCK_M = BLOCK_M = 32 query rows, FLASH_BLOCK_N = BLOCK_N = 32 keys), the same
// loop over key tiles (a causal block stops after the tile that holds its diagonal: the
// emulation's _key_tile_end), the same masking (_tile_mask: the ragged edge and, when
// causal, keys after the row), the same online-softmax update and the same saved
// log-sum-exp. Read the emulation first; this file adds only the mapping onto threads.
//
// One thread block per (batch*head, query tile); 128 threads = 4 warps; warp w owns the
// tile's query rows 8w .. 8w+7. For each key tile:
//   scores  lane c computes S[r, c] = scale * Q[r] . K[c] for its warp's 8 rows, reading Q
//           and K from shared memory four floats at a time (float4): each K float4 feeds
//           8 rows, each Q float4 is one broadcast to the whole warp;
//   softmax per row, warp_max / warp_sum over the 32 lanes (= the 32 keys) give the tile's
//           max and sum; m, l live in registers (every lane holds the same copy);
//   P V     lane owns output columns d = lane, lane+32, lane+64, lane+96 of its 8 rows
//           (8 x 4 accumulators in registers); P is read as float4 (4 keys at once).
// Counting instructions (not measured), shared memory, not arithmetic, limits these loops,
// hence the float4 reads: an SM does 4 warp-wide multiply-adds per clock, but its shared
// memory delivers only 128 bytes (one float for each lane of one warp) per clock.
// The (Tq, Tk) score matrix never exists; global memory sees Q, K, V once per tile pass
// and out, lse once.
//
// Layout: q, k, v, out (B, Tq|Tk, D) float32 contiguous, B = batch*heads, 1 <= D <= 128;
// lse (B, Tq) float32. In shared memory the Q and K tiles are D4 = D rounded up to a
// multiple of 4 wide (zero-padded, so float4 reads need no tail loop), and K rows are
// D4 + 4 apart so that 8 lanes reading float4s from 8 different rows hit different banks.
// Launch: grid (ceil(Tq/32), B), block 128, dynamic shared memory
// flash_forward_shared_bytes(D) (python: minireason.cuda_attention), which is over the
// default 48 KiB for D > 116, so the launcher raises the kernel's limit.

#ifndef INFINITY  // NVRTC (which CuPy uses) has no <math.h>
#define INFINITY __int_as_float(0x7f800000)
#endif

#define FLASH_BLOCK_M 32
#define FLASH_BLOCK_N 32
#define FLASH_THREADS 128
#define FLASH_WARPS (FLASH_THREADS / 32)                      // 4
#define ROWS_PER_WARP (FLASH_BLOCK_M / FLASH_WARPS)            // 8
#define COLS_PER_LANE 4                                       // 128 / 32: head_dim <= 128

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

// __launch_bounds__: at most 128 registers a thread (ptxas would take ~140), so that 4 blocks
// (16 warps) share an SM and hide each other's memory and barrier waits; no spills result.
extern "C" __global__ void __launch_bounds__(FLASH_THREADS, 4) attention_forward3_flash(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    float* __restrict__ out, float* __restrict__ lse,
    int Tq, int Tk, int D, float scale, int is_causal) {
    extern __shared__ float4 shared4[];                  // float4: 16-byte aligned
    const int D4 = (D + 3) / 4 * 4;                       // tile width in whole float4s
    const int k_stride = D4 + 4;
    float* Qs = reinterpret_cast<float*>(shared4);        // (BLOCK_M, D4)
    float* Ks = Qs + FLASH_BLOCK_M * D4;                  // (BLOCK_N, D4 + 4): lane = row
    float* Vs = Ks + FLASH_BLOCK_N * k_stride;            // (BLOCK_N, D)
    float* Ps = Vs + FLASH_BLOCK_N * D;                   // (BLOCK_M, BLOCK_N)

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int m0 = blockIdx.x * FLASH_BLOCK_M;
    const long b = blockIdx.y;
    const float* q_b = q + b * Tq * D;
    const float* k_b = k + b * Tk * D;
    const float* v_b = v + b * Tk * D;

    // _load_tile(q, m0, BLOCK_M): zero past Tq (and past D, up to D4). Tiles are loaded a row
    // per warp, the lanes reading consecutive floats (coalesced), with no division or
    // remainder by D: the integer pipe, not the FMA, was the busiest in the profile.
#pragma unroll 1
    for (int r = warp; r < FLASH_BLOCK_M; r += FLASH_WARPS) {
        const bool row_ok = m0 + r < Tq;
        const float* src = q_b + (long)(m0 + r) * D;
        for (int e = lane; e < D4; e += 32) Qs[r * D4 + e] = (row_ok && e < D) ? src[e] : 0.0f;
    }

    float m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][COLS_PER_LANE];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < COLS_PER_LANE; c++) acc[r][c] = 0.0f;
    }

    const int n_end = is_causal ? min(Tk, m0 + FLASH_BLOCK_M) : Tk;  // _key_tile_end
    for (int n0 = 0; n0 < n_end; n0 += FLASH_BLOCK_N) {
        __syncthreads();  // the previous tile's K, V, P are no longer read (and Qs is loaded)
#pragma unroll 1  // unrolled, the loads take the registers the accumulators need (spills)
        for (int c = warp; c < FLASH_BLOCK_N; c += FLASH_WARPS) {  // as the Q tile above
            const bool row_ok = n0 + c < Tk;
            const float* k_src = k_b + (long)(n0 + c) * D;
            const float* v_src = v_b + (long)(n0 + c) * D;
#pragma unroll 1
            for (int e = lane; e < D4; e += 32) {
                Ks[c * k_stride + e] = (row_ok && e < D) ? k_src[e] : 0.0f;
                if (e < D) Vs[c * D + e] = row_ok ? v_src[e] : 0.0f;
            }
        }
        __syncthreads();

        // S = scale * Q_tile K_tile^T: this lane's column, this warp's rows
        float s[ROWS_PER_WARP];
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++) s[r] = 0.0f;
        for (int e = 0; e < D4; e += 4) {
            float4 k4 = *reinterpret_cast<const float4*>(&Ks[lane * k_stride + e]);
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
            for (int c = 0; c < COLS_PER_LANE; c++) acc[r][c] *= alpha;
            m[r] = m_new;
            Ps[(warp * ROWS_PER_WARP + r) * FLASH_BLOCK_N + lane] = p;
        }
        __syncwarp();  // a warp reads back only the P rows it wrote

        // acc += P V_tile, four keys j .. j+3 at a time
        for (int j = 0; j < FLASH_BLOCK_N; j += 4) {
            float4 p4[ROWS_PER_WARP];
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++) {
                const float* p_row = Ps + (warp * ROWS_PER_WARP + r) * FLASH_BLOCK_N;
                p4[r] = *reinterpret_cast<const float4*>(p_row + j);
            }
#pragma unroll
            for (int c = 0; c < COLS_PER_LANE; c++) {
                int e = lane + 32 * c;
                if (e >= D) continue;
                float v0 = Vs[j * D + e], v1 = Vs[(j + 1) * D + e];
                float v2 = Vs[(j + 2) * D + e], v3 = Vs[(j + 3) * D + e];
#pragma unroll
                for (int r = 0; r < ROWS_PER_WARP; r++)
                    acc[r][c] += p4[r].x * v0 + p4[r].y * v1 + p4[r].z * v2 + p4[r].w * v3;
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
        for (int c = 0; c < COLS_PER_LANE; c++) {
            int e = lane + 32 * c;
            if (e < D) out[(b * Tq + row) * D + e] = acc[r][c] * inv_l;
        }
        if (lane == 0) lse[b * Tq + row] = l[r] > 0.0f ? m[r] + logf(l[r]) : -INFINITY;
    }
}
