// Run the CUDA C kernels of kernels/*.cu on the CPU, one std::thread per CUDA thread.
//
// For testing without a GPU only (tests/test_kernels_compile.py): it executes the very
// source files CuPy compiles, so indexing, masking, tiling, barriers and warp shuffles are
// checked against the NumPy reference on machines that have g++ but no GPU. It knows the
// few CUDA features those kernels use: threadIdx / blockIdx / blockDim, extern __shared__
// memory (filled with NaN before every block, so reading an unwritten element shows),
// __syncthreads (a barrier over the block), __syncwarp and __shfl_xor_sync (barriers over
// the 32 lanes of a warp), and the asynchronous global -> shared copies of sm_80 (cp.async)
// through the kernels' own wrappers cp_async4 / cp_async16 / cp_async_commit /
// cp_async_wait_all, which a kernel source defines in PTX unless CUDA_ON_CPU is set.
// Blocks run one after another; the threads of a block run concurrently, as they must for
// barriers to mean anything. It says nothing about speed.
#pragma once
#define CUDA_ON_CPU 1
#include <math.h>

#include <algorithm>
#include <barrier>
#include <cstddef>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

using std::min;

struct uint3 {
    unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
    float x, y, z, w;
};

inline thread_local uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__
#define __launch_bounds__(...)

// The block's extern __shared__ memory, 256 KiB (more than any GPU block has), under the two
// names the kernels declare it with: `shared` (float) and `shared4` (float4).
constexpr std::size_t kSharedFloats = 64 * 1024;
alignas(16) inline float shared[kSharedFloats];
inline float4 shared4[kSharedFloats / 4];

inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline float warp_slots[32][32];

inline void __syncthreads() { block_barrier->arrive_and_wait(); }

inline void __syncwarp(unsigned = 0xffffffffu) {
    warp_barriers[threadIdx.x / 32]->arrive_and_wait();
}

inline float __shfl_xor_sync(unsigned, float value, int lane_mask) {
    const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    warp_slots[warp][lane] = value;
    __syncwarp();
    float other = warp_slots[warp][lane ^ lane_mask];
    __syncwarp();  // nobody overwrites a slot before every lane has read it
    return other;
}

// cp.async: a copy of `bytes` bytes whose first `src_bytes` come from `src` and the rest are
// zeros. On a GPU it lands at some moment before the issuing thread's cp.async.wait_all. Here
// it lands either at once (copy_async_lands_at_wait = 0: catches a copy issued into a buffer
// that other threads still read) or at the wait (1: catches data read before its wait); the
// tests run both.
inline int copy_async_lands_at_wait = 1;
struct PendingCopy {
    void* dst;
    const void* src;
    int bytes, src_bytes;
};
inline thread_local std::vector<PendingCopy> pending_copies;

inline void land(const PendingCopy& c) {
    std::memset(c.dst, 0, c.bytes);
    if (c.src_bytes > 0) std::memcpy(c.dst, c.src, c.src_bytes);
}

inline void copy_async(void* dst, const void* src, int bytes, int src_bytes) {
    PendingCopy c{dst, src, bytes, src_bytes};
    if (copy_async_lands_at_wait)
        pending_copies.push_back(c);
    else
        land(c);
}
inline void cp_async4(float* dst, const float* src, int src_bytes) {
    copy_async(dst, src, 4, src_bytes);
}
inline void cp_async16(float* dst, const float* src, int src_bytes) {
    copy_async(dst, src, 16, src_bytes);
}
inline void cp_async_commit() {}
inline void cp_async_wait_all() {
    for (const auto& c : pending_copies) land(c);
    pending_copies.clear();
}

// Run body() as grid (gx, gy) of blocks of `threads` threads (the cuLaunchKernel of this file).
inline void run_grid(unsigned gx, unsigned gy, unsigned threads,
                     const std::function<void()>& body) {
    gridDim = {gx, gy, 1};
    blockDim = {threads, 1, 1};
    for (unsigned by = 0; by < gy; by++) {
        for (unsigned bx = 0; bx < gx; bx++) {
            const float nan = std::numeric_limits<float>::quiet_NaN();
            std::fill(shared, shared + kSharedFloats, nan);
            std::fill(shared4, shared4 + kSharedFloats / 4, float4{nan, nan, nan, nan});
            std::barrier<> block(threads);
            block_barrier = &block;
            warp_barriers.clear();
            for (unsigned w = 0; w * 32 < threads; w++)
                warp_barriers.push_back(
                    std::make_unique<std::barrier<>>(std::min(32u, threads - 32 * w)));
            std::vector<std::thread> team;
            for (unsigned t = 0; t < threads; t++)
                team.emplace_back([&, t] {
                    threadIdx = {t, 0, 0};
                    blockIdx = {bx, by, 0};
                    body();
                    pending_copies.clear();  // a copy never waited for is never read
                });
            for (auto& th : team) th.join();
        }
    }
}

// Call kernel(*args[0], *args[1], ...) on every thread: arguments travel as void* to each
// value, exactly like cuLaunchKernel's kernelParams.
template <typename... Args, std::size_t... I>
void call_unpacked(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<Args>>*>(args[I])...);
}

template <typename... Args>
void launch(void (*kernel)(Args...), unsigned gx, unsigned gy, unsigned threads, void** args) {
    run_grid(gx, gy, threads,
             [&] { call_unpacked(kernel, args, std::index_sequence_for<Args...>{}); });
}

// cpu_launch_NAME(gx, gy, threads, args): the C entry point ctypes calls for kernel NAME.
#define EXPORT_KERNEL(name)                                                                  \
    extern "C" void cpu_launch_##name(unsigned gx, unsigned gy, unsigned threads, void** args) { \
        launch(name, gx, gy, threads, args);                                                 \
    }
