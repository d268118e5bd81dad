"""Benchmarks behind ``minireason bench``: measured speed, printed and written as JSON.

Speed targets live here, never in timed tests. Each benchmark reports the machine, the
versions and the settings beside its figures.

Modules:

- ``train``: one full training step, NumPy against PyTorch eager, and the matmul rate;
- ``generate``: step-4 generation with the KV cache, NumPy against PyTorch eager;
- ``explain``: seconds to explain one (user, item) with N candidates;
- ``catalogue``: reasons per second of ``explain-all`` with 1 and 2 local Dask workers;
- ``kernels``: TFLOP/s of the CUDA attention kernels on a GPU;
- ``machine``: what every benchmark reports and needs: the machine, a busy load on request,
  interleaved timing, medians and quartiles.
"""
