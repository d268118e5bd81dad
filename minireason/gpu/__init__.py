"""The CUDA attention kernels of ``kernels/`` launched from CuPy, and their NumPy emulation.

Reads: query, key and value arrays (CuPy for the launchers, NumPy for the emulation).
The ``.cu`` sources live in the top-level ``kernels/`` folder (with their README and results
table), shipped in the package as ``minireason/gpu/kernels``. Taught in tutorial 09.

Modules:

- ``cuda_attention``: compile and launch kernels 1-4 (naive, fused softmax, flash forward,
  flash backward) with CuPy's RawModule;
- ``flash_emulation``: the tiled online-softmax algorithm of kernels 3 and 4 in NumPy, tile by
  tile, so it can be read, stepped through and tested without a GPU.
"""
