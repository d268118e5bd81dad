// Kernel 2: the scores come from cuBLAS (cupy.matmul), and one fused kernel does
// scale + mask + softmax in place, one warp per score row, with warp-shuffle reductions.
//
//     S   = q @ k^T                       cupy.matmul, (B, Tq, Tk)
//     P   = softmax(scale * S + bias)     this kernel, in place, causal mask applied here
//     out = P @ v                         cupy.matmul, (B, Tq, Ev)
//
// Reference: minireason.attention.attention_forward, whose masked_softmax this kernel
// reproduces (a row with every key masked becomes all zeros). Against kernel 1 the two
// products now run on cuBLAS's tuned tiles, and the softmax reads and writes each score
// exactly twice from registers and global memory with no shared memory and no
// __syncthreads: the 32 lanes of a warp combine their partial maxima and sums with
// __shfl_xor_sync butterflies. The price is the (B, Tq, Tk) score matrix in global memory.
//
// Layout: scores (B, Tq, Tk) float32 contiguous, overwritten with P. When has_bias, bias
// (B, Tq, Tk) float32 is added (0 / -inf for a boolean mask); else it is unread.
// Launch: grid ceil(B*Tq / ROWS_PER_BLOCK), block 32 * ROWS_PER_BLOCK threads.

#ifndef INFINITY  // NVRTC (which CuPy uses) has no <math.h>
#define INFINITY __int_as_float(0x7f800000)
#endif

#define ROWS_PER_BLOCK 4

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

extern "C" __global__ void scale_mask_softmax(
    float* __restrict__ scores, const float* __restrict__ bias,
    int B, int Tq, int Tk, float scale, int is_causal, int has_bias) {
    const int lane = threadIdx.x % 32;
    const long row = (long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;  // b * Tq + i
    if (row >= (long)B * Tq) return;  // the whole warp leaves together
    const int i = row % Tq;
    float* s_row = scores + row * Tk;

    // 1. scale, mask, and the row maximum
    float lane_max = -INFINITY;
    for (int j = lane; j < Tk; j += 32) {
        float s = s_row[j] * scale;
        if (has_bias) s += bias[row * Tk + j];
        if (is_causal && j > i) s = -INFINITY;
        s_row[j] = s;
        lane_max = fmaxf(lane_max, s);
    }
    float row_max = warp_max(lane_max);
    if (row_max == -INFINITY) row_max = 0.0f;  // every key masked: the row becomes zeros

    // 2. exponentials and their sum (each lane rereads only the entries it wrote)
    float lane_sum = 0.0f;
    for (int j = lane; j < Tk; j += 32) {
        float p = expf(s_row[j] - row_max);
        s_row[j] = p;
        lane_sum += p;
    }
    float row_sum = warp_sum(lane_sum);
    float inv_sum = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;

    // 3. normalise
    for (int j = lane; j < Tk; j += 32) s_row[j] *= inv_sum;
}
