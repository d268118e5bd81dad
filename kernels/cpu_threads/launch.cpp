// One kernel source run on CPU threads: g++ -std=c++20 -shared -fPIC -pthread
//     -DKERNEL_SOURCE='"../attention_forward3_flash.cu"'
//     -DKERNELS='EXPORT_KERNEL(attention_forward3_flash)' launch.cpp -o forward3.so
// See cuda_on_cpu.h; driven by tests/test_kernels_compile.py.
#include "cuda_on_cpu.h"

#include KERNEL_SOURCE

KERNELS

// Where cp.async copies land (cuda_on_cpu.h): 1 at the issuing thread's wait, 0 at once.
extern "C" void cpu_set_copy_async_lands_at_wait(int at_wait) { copy_async_lands_at_wait = at_wait; }
