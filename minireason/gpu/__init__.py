"""The CUDA kernels of ``kernels/`` launched from CuPy, their NumPy emulation, and the model on them.

Reads: query, key and value arrays, and the model's activations and parameters (CuPy for the
launchers, NumPy for the emulation). The ``.cu`` sources live in the top-level ``kernels/``
folder (with their README and results table), shipped in the package as
``minireason/gpu/kernels``. Taught in tutorial 09.

Modules:

- ``cuda_attention``: compile and launch kernels 1-5 (naive, fused softmax, flash forward,
  flash backward, double-buffered flash forward) with CuPy's RawModule;
- ``flash_emulation``: the tiled online-softmax algorithm of kernels 3, 4 and 5 in NumPy, tile
  by tile, so it can be read, stepped through and tested without a GPU;
- ``cuda_fused``: launch the fused kernels 6-9 (LayerNorm, GELU, cross-entropy over the
  vocabulary, AdamW);
- ``fused_emulation``: those four in NumPy, laid out as their threads share the work;
- ``model_kernels``: the model's layer pairs on these kernels, and which to run
  (``--attention``, ``--fused``), installed into ``backend`` for ``--device cuda``.
"""
