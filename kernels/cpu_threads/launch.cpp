// One kernel source run on CPU threads: g++ -std=c++20 -shared -fPIC -pthread
//     -DKERNEL_SOURCE='"../attention_forward3_flash.cu"'
//     -DKERNELS='EXPORT_KERNEL(attention_forward3_flash)' launch.cpp -o forward3.so
// See cuda_on_cpu.h; driven by tests/test_kernels_compile.py.
#include "cuda_on_cpu.h"

#include KERNEL_SOURCE

KERNELS
