// Kernel 8: softmax cross-entropy over the vocabulary, forward and backward, a row per warp.
//
// Reference: minireason.nn.layers.cross_entropy_forward / cross_entropy_backward. With
// lse = rowmax + log(sum_j exp(logit_j - rowmax)), a token's negative log-likelihood is
// nll = log z - (logit[target] - rowmax) and the gradient of the weighted mean loss is
//     dlogits[i, j] = (softmax_ij - [j == target_i]) * weight_i
// where weight_i = mask_i / sum(mask) (1 / N without a mask): a token the mask leaves out
// has weight 0 and a zero gradient row. NumPy builds the (N, V) exponentials in the forward
// and keeps them for the backward; here the forward keeps one number per row (lse), and the
// backward reads the logits once and writes the gradient once. Mirrors
// minireason.gpu.fused_emulation.cross_entropy_forward_emulated / _backward_emulated.
//
//   cross_entropy_forward   one warp per row: the row maximum (warp_max), z (warp_sum),
//                           lse[i] and nll[i]. The loss, sum_i nll_i weight_i, is a sum of
//                           N numbers left to the launcher.
//   cross_entropy_backward  one warp per row: dlogits = exp(logit - lse) * weight, minus
//                           weight at the target.
//
// Layout: logits, dlogits (N, V) float32 contiguous (dlogits may not alias logits: the
// forward's caller may still hold them); targets (N,) int64 in [0, V); weights, lse, nll
// (N,) float32. Launch: grid ceil(N / CE_ROWS_PER_BLOCK), block 32 * CE_ROWS_PER_BLOCK.

#ifndef INFINITY  // NVRTC (which CuPy uses) has no <math.h>
#define INFINITY __int_as_float(0x7f800000)
#endif

#define CE_ROWS_PER_BLOCK 4

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

extern "C" __global__ void cross_entropy_forward(
    const float* __restrict__ logits, const long long* __restrict__ targets,
    float* __restrict__ lse, float* __restrict__ nll, int N, int V) {
    const int lane = threadIdx.x % 32;
    const long row = (long)blockIdx.x * CE_ROWS_PER_BLOCK + threadIdx.x / 32;
    if (row >= N) return;  // the whole warp leaves together
    const float* l_row = logits + row * V;

    float lane_max = -INFINITY;
    for (int j = lane; j < V; j += 32) lane_max = fmaxf(lane_max, l_row[j]);
    const float row_max = warp_max(lane_max);
    float partial = 0.0f;
    for (int j = lane; j < V; j += 32) partial += expf(l_row[j] - row_max);
    const float log_z = logf(warp_sum(partial));
    if (lane == 0) {
        lse[row] = row_max + log_z;
        nll[row] = log_z - (l_row[targets[row]] - row_max);
    }
}

extern "C" __global__ void cross_entropy_backward(
    const float* __restrict__ logits, const long long* __restrict__ targets,
    const float* __restrict__ weights, const float* __restrict__ lse,
    float* __restrict__ dlogits, int N, int V) {
    const int lane = threadIdx.x % 32;
    const long row = (long)blockIdx.x * CE_ROWS_PER_BLOCK + threadIdx.x / 32;
    if (row >= N) return;
    const float w = weights[row], row_lse = lse[row];
    const long long target = targets[row];
    const float* l_row = logits + row * V;
    float* d_row = dlogits + row * V;
    for (int j = lane; j < V; j += 32) {
        float d = expf(l_row[j] - row_lse) * w;
        d_row[j] = j == target ? d - w : d;
    }
}
