// Kernel 7: GELU (tanh form) forward and backward, one pass over the array each.
//
// Reference: minireason.nn.layers.gelu_forward / gelu_backward, the tanh approximation
//     out = 0.5 x (1 + t),  t = tanh(s (x + 0.044715 x^3)),  s = sqrt(2 / pi)
//     dx  = dout (0.5 (1 + t) + 0.5 x (1 - t^2) s (1 + 3 * 0.044715 x^2))
// written with the same grouping of terms as the NumPy code. NumPy makes about eight passes
// over the (N, 4C) activations for each; here every element is read once and written once.
// The forward saves nothing but its input: the backward recomputes t (one tanh) instead of
// keeping an (N, 4C) buffer of it. Mirrors minireason.gpu.fused_emulation.gelu_forward_emulated
// and gelu_backward_emulated.
//
// Thread mapping: a grid-stride loop, element i = blockIdx.x * GELU_THREADS + threadIdx.x,
// then + gridDim.x * GELU_THREADS ... (consecutive threads, consecutive floats: coalesced).
// Layout: x, out, dout, dx float32 contiguous, n elements. Launch: grid
// min(ceil(n / GELU_THREADS), GELU_MAX_BLOCKS), block GELU_THREADS.

#define GELU_THREADS 256
#define GELU_MAX_BLOCKS 4096
#define GELU_S 0.7978845608028654f            // sqrt(2 / pi)
#define GELU_SC 0.035677408136300125f         // sqrt(2 / pi) * 0.044715
#define GELU_HALF_S 0.3989422804014327f       // 0.5 * sqrt(2 / pi)
#define GELU_SC_3_HALVES 0.05351611220445019f  // 1.5 * sqrt(2 / pi) * 0.044715

// t = tanh(s (x + 0.044715 x^3)), grouped as NumPy builds it: tanh(((x x) sc + s) x)
__device__ __forceinline__ float gelu_tanh(float x) {
    return tanhf((x * x * GELU_SC + GELU_S) * x);
}

extern "C" __global__ void gelu_forward(const float* __restrict__ x, float* __restrict__ out,
                                        long long n) {
    for (long i = (long)blockIdx.x * GELU_THREADS + threadIdx.x; i < n;
         i += (long)gridDim.x * GELU_THREADS) {
        float xi = x[i];
        out[i] = (gelu_tanh(xi) + 1.0f) * xi * 0.5f;
    }
}

extern "C" __global__ void gelu_backward(const float* __restrict__ x,
                                         const float* __restrict__ dout, float* __restrict__ dx,
                                         long long n) {
    for (long i = (long)blockIdx.x * GELU_THREADS + threadIdx.x; i < n;
         i += (long)gridDim.x * GELU_THREADS) {
        float xi = x[i];
        float t = gelu_tanh(xi);
        float inner = (xi * xi * GELU_SC_3_HALVES + GELU_HALF_S) * xi;  // 0.5 s (1 + 3c x^2) x
        dx[i] = ((t + 1.0f) * 0.5f - inner * (t * t - 1.0f)) * dout[i];
    }
}
