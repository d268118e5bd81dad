"""Batch sources: what the training loop reads, one ``(idx, targets, loss_mask)`` per step.

A batch source is a callable ``get_batch(step)`` that returns the same arrays for the same
step (each seeds its sampler with ``(seed, step)`` or ``(seed, epoch)``), which is what makes
resume exact (:mod:`minireason.train.loop.loop`):

- :class:`TokenWindows`: random windows of one long token stream (pretraining);
- :class:`ReasonBatches`: ragged ``prompt + reason + <eos>`` sequences, right-padded, with the
  loss on the reason only (fine-tuning); :func:`pad_batch` pads any chosen rows the same way.
"""

from __future__ import annotations

import numpy as np

from minireason import backend
from minireason.prep.prepared import SequenceSet


class TokenWindows:
    """Batch source over one long 1-D token stream: random windows, seeded by ``(seed, step)``.

    ``get_batch(step)`` returns ``idx`` ``(batch_size, block_size)``, ``targets`` (idx shifted
    by one token) and ``loss_mask`` None (every token counts).
    """

    def __init__(self, tokens, batch_size: int, block_size: int, seed: int = 0):
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise ValueError(
                f"tokens must be a 1-D integer array, "
                f"got shape {tokens.shape}, dtype {tokens.dtype}"
            )
        if len(tokens) < block_size + 1:
            raise ValueError(
                f"tokens has {len(tokens)} ids, fewer than block_size + 1 = {block_size + 1}"
            )
        self.tokens, self.batch_size, self.block_size, self.seed = (
            tokens,
            batch_size,
            block_size,
            seed,
        )

    def __call__(self, step: int):
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size)
        window = starts[:, None] + np.arange(self.block_size + 1)
        chunk = self.tokens[window].astype(np.int64)
        xp = backend.xp()
        return xp.asarray(chunk[:, :-1]), xp.asarray(chunk[:, 1:]), None


class ReasonBatches:
    """Batch source over ragged ``prompt + reason + <eos>`` sequences, right-padded.

    ``get_batch(step)`` takes ``batch_size`` sequences in the order of a seeded permutation
    of the whole set (a new permutation each epoch, seeded by ``(seed, epoch)``, so a batch
    depends only on the step) and returns, with L the longest sequence of the batch:

    - ``idx`` ``(B, L - 1)``: each sequence without its last token, then ``pad_id``;
    - ``targets`` ``(B, L - 1)``: each sequence without its first token, then ``pad_id``;
    - ``loss_mask`` ``(B, L - 1)``: the sequence's mask shifted like ``targets`` (1 on the
      reason and ``<eos>`` targets), 0 on the prompt and on padding.
    """

    def __init__(self, sequences: SequenceSet, batch_size: int, pad_id: int, seed: int = 0):
        if len(sequences) == 0:
            raise ValueError("no fine-tuning sequences (the prepared split has no targets)")
        lengths = np.diff(sequences.offsets)
        if lengths.min() < 2:
            raise ValueError("a fine-tuning sequence shorter than 2 tokens cannot be trained on")
        self.sequences, self.batch_size, self.pad_id, self.seed = (
            sequences,
            batch_size,
            pad_id,
            seed,
        )

    def indices(self, step: int) -> np.ndarray:
        """Rows of the sequences in batch ``step``: ``(batch_size,)``."""
        n = len(self.sequences)
        positions = step * self.batch_size + np.arange(self.batch_size)
        epochs, within = np.divmod(positions, n)
        rows = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            order = np.random.default_rng([self.seed, int(epoch)]).permutation(n)
            rows[epochs == epoch] = order[within[epochs == epoch]]
        return rows

    def __call__(self, step: int):
        return pad_batch(self.sequences, self.indices(step), self.pad_id)


def pad_batch(sequences: SequenceSet, rows, pad_id: int):
    """``(idx, targets, loss_mask)`` of the sequences ``rows``, right-padded (see
    :class:`ReasonBatches`); arrays on the current backend, ``(B, L - 1)`` each."""
    pieces = [sequences.get(int(r)) for r in rows]
    width = max(len(ids) for ids, _ in pieces) - 1
    idx = np.full((len(pieces), width), pad_id, dtype=np.int64)
    targets = np.full((len(pieces), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(pieces), width), dtype=np.int64)
    for b, (ids, m) in enumerate(pieces):
        n = len(ids) - 1
        idx[b, :n], targets[b, :n], mask[b, :n] = ids[:-1], ids[1:], m[1:]
    xp = backend.xp()
    return xp.asarray(idx), xp.asarray(targets), xp.asarray(mask)
