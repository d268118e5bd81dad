// Kernel 9: the AdamW update of one parameter, in one pass.
//
// Reference: minireason.nn.optim.adamw_update, the same terms in the same order:
//     m = beta1 m + (1 - beta1) g
//     v = beta2 v + (1 - beta2) g^2
//     p = decay * p                        (decay = 1 - lr * weight_decay; 1: no decay)
//     p = p - step_size * m / (sqrt(v) * v_correction + eps)
// with step_size = lr / (1 - beta1^t) and v_correction = 1 / sqrt(1 - beta2^t) computed once
// per step on the host (minireason.nn.optim.AdamW.step), and 1 - beta1, 1 - beta2 passed in
// (computed in double there, as NumPy does). NumPy makes about a dozen passes over each
// parameter and its three companions; here each of p, g, m, v is read once and p, m, v
// written once. Mirrors minireason.gpu.fused_emulation.adamw_update_emulated.
//
// Thread mapping: a grid-stride loop as kernel 7. Layout: p, g, m, v float32 contiguous, n
// elements each. Launch: grid min(ceil(n / ADAMW_THREADS), ADAMW_MAX_BLOCKS), block
// ADAMW_THREADS.

#define ADAMW_THREADS 256
#define ADAMW_MAX_BLOCKS 4096

extern "C" __global__ void adamw_update(
    float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
    float* __restrict__ v, long long n, float beta1, float one_minus_beta1, float beta2,
    float one_minus_beta2, float decay, float v_correction, float eps, float step_size) {
    for (long i = (long)blockIdx.x * ADAMW_THREADS + threadIdx.x; i < n;
         i += (long)gridDim.x * ADAMW_THREADS) {
        const float gi = g[i];
        const float mi = m[i] * beta1 + one_minus_beta1 * gi;
        const float vi = v[i] * beta2 + one_minus_beta2 * (gi * gi);
        float pi = p[i];
        if (decay != 1.0f) pi *= decay;
        pi -= mi / (sqrtf(vi) * v_correction + eps) * step_size;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
    }
}
