"""Training: pretrain the GPT on review sentences, then fine-tune it on prompt -> reason.

Reads: a prepared directory (:mod:`minireason.prep.prepared`) and a preset
(``train/presets/*.json``). Writes: a *run directory* (``minireason train --out RUN``):
checkpoints of both stages, loss curves, the tokenizer and feature set it was trained with,
and ``run.json`` (:mod:`minireason.train.run`), which records what later stages must read
back: the prompt budget, the focus size and the decoding settings. Taught in tutorial 06.

Modules:

- ``batches``: batch sources (token windows for pretraining, padded reason sequences with a
  loss mask for fine-tuning), each a function of the step only, so resume is exact;
- ``loop``: the training loop (AdamW steps, validation, checkpoints, resume);
- ``recipe``: presets and the two-stage recipe behind ``minireason train``;
- ``run``: the run directory's contract.
"""
