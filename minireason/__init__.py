"""minireason: from-scratch, educational LLM-based recommendation-reason generation.

One folder per layer; read them in the order data flows (each layer imports only from the
ones above it)::

    backend.py    the one NumPy/CuPy switch
    files.py      files that are complete or absent: atomic writes, locks, checksums
    text.py       what counts as a word, and when a text mentions a phrase
    data/         seed step 1: load, validate, clean and split behaviour logs
    prep/         seed steps 2-3: aspects, targets, focus, prompts, BPE; the prepared directory
    nn/           the compact GPT: attention, layers, model, optimiser, gradient check,
                  checkpoints, and its PyTorch reference
    train/        pretrain then fine-tune; the run directory
    reason/       seed step 4: recommend, generate candidates, score them, show the evidence
    evaluation/   explanation metrics against baselines, recommendation metrics
    gpu/          the CUDA attention kernels (kernels/*.cu) from CuPy, and their emulation
    bench/        measured speed: training step, explanations, kernels
    course/       the autograder, assignments A1-A4, the seed document's worked example
    demo.py       the whole job in one command
    cli.py        the ``minireason`` command line

A first reading for a student: ``nn/attention.py``, ``nn/layers.py``, ``nn/model.py``, then
``prep/prompts.py`` and ``reason/explain.py``; the tutorials (``tutorials/README.md``) walk
the same path.
"""

__version__ = "0.2.0"
