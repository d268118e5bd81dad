// Run the CUDA C kernels of kernels/*.cu on the CPU, one std::thread per CUDA thread.
//
// For testing without a GPU only (tests/test_kernels_compile.py): it executes the very
// source files CuPy compiles, so indexing, masking, tiling, barriers and warp shuffles are
// checked against the NumPy reference on machines that have g++ but no GPU. It knows the
// few CUDA features those kernels use: threadIdx / blockIdx / blockDim, extern __shared__
// memory (filled with NaN before every block, so reading an unwritten element shows),
// __syncthreads (a barrier over the block), __syncwarp and __shfl_xor_sync (barriers over
// the 32 lanes of a warp). Blocks run one after another; the threads of a block run
// concurrently, as they must for barriers to mean anything. It says nothing about speed.
#pragma once
#include <math.h>

#include <algorithm>
#include <barrier>
#include <cstddef>
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
