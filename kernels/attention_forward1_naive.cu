// Kernel 1: naive attention forward, one thread block per (batch*head, query row).
//
//     out[b, i, :] = softmax_j(scale * q[b, i] . k[b, j] + bias[b, i, j]) @ v[b, j, :]
//
// Reference: minireason.attention.attention_forward (the NumPy version this kernel must
// match). The block's threads first compute the row's Tk scores into shared memory, then
// reduce the row maximum and the softmax denominator across the block in shared memory,
// and finally each thread produces some output columns. Every step is a loop over the
// whole row, so the work per block is O(Tk * (E + Ev)) and the key and value rows are read
// from global memory by every query row: simple and slow, the baseline for kernels 2-3.
//
// Layout: q (B, Tq, E), k (B, Tk, E), v (B, Tk, Ev), out (B, Tq, Ev), all float32 and
// contiguous; B is batch * heads. When has_bias, bias (B, Tq, Tk) float32 is added to the
// scaled scores (-inf masks a key; a boolean mask arrives here as 0 / -inf); else it is
// unread. is_causal masks keys j > i. A row whose every key is masked gets zeros, as in the
// reference.
//
// Launch: grid (Tq, B), block NAIVE_THREADS (a power of two), dynamic shared memory
// (Tk + NAIVE_THREADS) floats.

#ifndef INFINITY  // NVRTC (which CuPy uses) has no <math.h>
#define INFINITY __int_as_float(0x7f800000)
#endif

#define NAIVE_THREADS 128

// Reduce one value per thread to thread 0 of the block (max when is_max, else sum).
__device__ float block_reduce(float value, float* scratch, bool is_max) {
    scratch[threadIdx.x] = value;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) {
            float other = scratch[threadIdx.x + stride];
            scratch[threadIdx.x] = is_max ? fmaxf(scratch[threadIdx.x], other)
                                          : scratch[threadIdx.x] + other;
        }
        __syncthreads();
    }
    float result = scratch[0];
    __syncthreads();  // everyone has read scratch[0] before it is reused
    return result;
}

extern "C" __global__ void attention_forward1_naive(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ bias, float* __restrict__ out,
    int Tq, int Tk, int E, int Ev, float scale, int is_causal, int has_bias) {
    extern __shared__ float shared[];
    float* scores = shared;           // (Tk): this row's scores, then its unnormalised weights
    float* scratch = shared + Tk;     // (blockDim.x): reduction workspace

    const int i = blockIdx.x;         // query row
    const long b = blockIdx.y;        // batch * head
    const float* q_row = q + (b * Tq + i) * E;
    const float* k_b = k + b * Tk * E;
    const float* v_b = v + b * Tk * Ev;

    // 1. scores and the row maximum
    float thread_max = -INFINITY;
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
        float s = -INFINITY;
        if (!(is_causal && j > i)) {
            float dot = 0.0f;
            for (int e = 0; e < E; e++) dot += q_row[e] * k_b[(long)j * E + e];
            s = dot * scale;
            if (has_bias) s += bias[(b * Tq + i) * Tk + j];
        }
        scores[j] = s;
        thread_max = fmaxf(thread_max, s);
    }
    float row_max = block_reduce(thread_max, scratch, true);
    if (row_max == -INFINITY) row_max = 0.0f;  // every key masked: exp(-inf - 0) = 0, no NaN

    // 2. exponentials and their sum
    float thread_sum = 0.0f;
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
        float p = expf(scores[j] - row_max);
        scores[j] = p;
        thread_sum += p;
    }
    float row_sum = block_reduce(thread_sum, scratch, false);  // its barrier publishes scores
    float inv_sum = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;

    // 3. weighted sum of the value rows, one output column per thread at a time
    for (int e = threadIdx.x; e < Ev; e += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < Tk; j++) acc += scores[j] * v_b[(long)j * Ev + e];
        out[(b * Tq + i) * Ev + e] = acc * inv_sum;
    }
}
