// Kernel 6: LayerNorm forward and backward, each row in one warp.
//
// Reference: minireason.nn.layers.layernorm_forward / layernorm_backward. NumPy (or CuPy's
// elementwise kernels) makes one pass over the (N, C) activations per operation: the mean,
// the subtraction, the square, the variance, the scaling... ten or so passes for the forward.
// Here one warp reads its row two times and writes it once; the row's sums are combined
// across the 32 lanes with __shfl_xor_sync butterflies (as kernel 2's softmax).
// Mirrors minireason.gpu.fused_emulation: layernorm_forward_emulated, layernorm_backward_emulated.
//
//   layernorm_forward       one warp per row, LN_ROWS_PER_BLOCK rows a block:
//                           mean = sum(x) / C; var = sum((x - mean)^2) / C;
//                           rstd = 1 / sqrt(var + eps); out = (x - mean) * rstd * w + b;
//                           saves mean and rstd (N,), not xhat: the backward recomputes
//                           xhat = (x - mean) * rstd from x (one (N, C) buffer fewer)
//   layernorm_backward_dx   one warp per row: with g = dout * w,
//                           dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   layernorm_backward_dwdb dw = sum over rows of dout * xhat, db = sum of dout: a block per
//                           (32 columns, LN_DWDB_ROWS rows); lane = column (the warp's reads
//                           of a row are consecutive), warp w takes rows w, w + 8, ...; the
//                           8 warps' sums are added in shared memory, in warp order, into one
//                           partial per block row; the launcher adds the partials (N/256, C)
//                           over the rows. No atomics: the result does not depend on timing.
//
// Layout: x, out, dout, dx (N, C) float32 contiguous; w, b (C,); mean, rstd (N,);
// dw_partial, db_partial (ceil(N / LN_DWDB_ROWS), C).
// Launch: forward and dx grid ceil(N / LN_ROWS_PER_BLOCK), block 32 * LN_ROWS_PER_BLOCK;
// dwdb grid (ceil(C / 32), ceil(N / LN_DWDB_ROWS)), block 32 * LN_DWDB_WARPS, dynamic shared
// memory 2 * LN_DWDB_WARPS * 32 floats.

#define LN_ROWS_PER_BLOCK 4
#define LN_DWDB_WARPS 8
#define LN_DWDB_ROWS 256

__device__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset /= 2)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

extern "C" __global__ void layernorm_forward(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
    float* __restrict__ out, float* __restrict__ mean, float* __restrict__ rstd,
    int N, int C, float eps) {
    const int lane = threadIdx.x % 32;
    const long row = (long)blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.x / 32;
    if (row >= N) return;  // the whole warp leaves together
    const float* x_row = x + row * C;

    float partial = 0.0f;
    for (int j = lane; j < C; j += 32) partial += x_row[j];
    const float mu = warp_sum(partial) / C;
    partial = 0.0f;
    for (int j = lane; j < C; j += 32) {
        float d = x_row[j] - mu;
        partial += d * d;
    }
    const float var = warp_sum(partial) / C;
    const float r = 1.0f / sqrtf(var + eps);
    for (int j = lane; j < C; j += 32) out[row * C + j] = (x_row[j] - mu) * r * w[j] + b[j];
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = r;
    }
}

extern "C" __global__ void layernorm_backward_dx(
    const float* __restrict__ dout, const float* __restrict__ x, const float* __restrict__ w,
    const float* __restrict__ mean, const float* __restrict__ rstd, float* __restrict__ dx,
    int N, int C) {
    const int lane = threadIdx.x % 32;
    const long row = (long)blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.x / 32;
    if (row >= N) return;
    const float mu = mean[row], r = rstd[row];
    const float* x_row = x + row * C;
    const float* d_row = dout + row * C;

    float g_partial = 0.0f, gx_partial = 0.0f;
    for (int j = lane; j < C; j += 32) {
        float xhat = (x_row[j] - mu) * r;
        float g = d_row[j] * w[j];
        g_partial += g;
        gx_partial += g * xhat;
    }
    const float g_mean = warp_sum(g_partial) / C;
    const float gx_mean = warp_sum(gx_partial) / C;
    for (int j = lane; j < C; j += 32) {
        float xhat = (x_row[j] - mu) * r;
        float g = d_row[j] * w[j];
        dx[row * C + j] = (g - g_mean - xhat * gx_mean) * r;
    }
}

extern "C" __global__ void layernorm_backward_dwdb(
    const float* __restrict__ dout, const float* __restrict__ x,
    const float* __restrict__ mean, const float* __restrict__ rstd,
    float* __restrict__ dw_partial, float* __restrict__ db_partial, int N, int C) {
    extern __shared__ float shared[];  // (2, LN_DWDB_WARPS, 32): dw sums, then db sums
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int col = blockIdx.x * 32 + lane;
    const int r0 = blockIdx.y * LN_DWDB_ROWS;
    const int r_end = min(N, r0 + LN_DWDB_ROWS);

    float dw = 0.0f, db = 0.0f;
    if (col < C) {
        for (int r = r0 + warp; r < r_end; r += LN_DWDB_WARPS) {
            float d = dout[(long)r * C + col];
            float xhat = (x[(long)r * C + col] - mean[r]) * rstd[r];
            dw += d * xhat;
            db += d;
        }
    }
    shared[warp * 32 + lane] = dw;
    shared[(LN_DWDB_WARPS + warp) * 32 + lane] = db;
    __syncthreads();
    if (warp == 0 && col < C) {
        float dw_sum = 0.0f, db_sum = 0.0f;
        for (int w = 0; w < LN_DWDB_WARPS; w++) {
            dw_sum += shared[w * 32 + lane];
            db_sum += shared[(LN_DWDB_WARPS + w) * 32 + lane];
        }
        dw_partial[(long)blockIdx.y * C + col] = dw_sum;
        db_partial[(long)blockIdx.y * C + col] = db_sum;
    }
}
