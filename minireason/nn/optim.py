"""AdamW, its learning-rate schedule, and gradient clipping.

AdamW (Loshchilov & Hutter) with decoupled weight decay, for each parameter ``p`` with
gradient ``g`` at step ``t = 1, 2, ...``::

    m = beta1 m + (1 - beta1) g
    v = beta2 v + (1 - beta2) g^2
    p = p - lr * wd * p                                  (only where decay applies)
    p = p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

Every update is done in place on the parameter arrays the model owns. On CuPy with the
project's CUDA kernels installed and ``--fused``, :func:`adamw_update` of a float32
parameter is kernel 9 (one pass instead of a dozen; ``backend.gpu_kernels()``).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from minireason import backend
from minireason.backend import array_module
from minireason.nn.threads import rowwise


def lr_at(
    step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0
) -> float:
    """Learning rate for ``step`` (0-based): linear warm-up then cosine decay to ``min_lr``.

    Steps ``0 .. warmup_steps - 1`` rise linearly to ``max_lr`` (step 0 gets
    ``max_lr / warmup_steps``); from ``warmup_steps`` to ``total_steps`` the rate follows a
    half cosine from ``max_lr`` down to ``min_lr``; after ``total_steps`` it stays ``min_lr``.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps or total_steps <= warmup_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def global_grad_norm(grads: dict) -> float:
    """``sqrt(sum over all gradients of sum(g^2))`` (each sum in the gradient's dtype, the total
    in a Python float)."""
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1)
        total += float(flat @ flat)
    return math.sqrt(total)


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients in place so their global norm is at most ``max_norm``.

    Returns:
        The global norm before clipping (may be inf or NaN; then nothing is scaled).
    """
    norm = global_grad_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= scale
    return norm


class AdamW:
    """AdamW over a dict of parameters, updated in place.

    Args:
        params: ``{name: array}`` (the model's own arrays; the optimizer writes into them).
        lr: default learning rate (:meth:`step` may override it per step).
        betas, eps: Adam's constants.
        weight_decay: decoupled decay coefficient.
        decay: ``{name: bool}``, which parameters get weight decay (e.g. ``model.decay_mask()``);
            None decays everything.
    """

    def __init__(
        self, params: dict, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, decay=None
    ):
        self.params = params
        self.lr = float(lr)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.decay = {name: True for name in params} if decay is None else dict(decay)
        self.t = 0
        self.m = {name: array_module(p).zeros_like(p) for name, p in params.items()}
        self.v = {name: array_module(p).zeros_like(p) for name, p in params.items()}

    def step(self, grads: dict, lr: float | None = None) -> None:
        """One update of every parameter from ``grads`` (same names and shapes)."""
        lr = self.lr if lr is None else float(lr)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = lr / (1.0 - b1**self.t)
        v_correction = 1.0 / math.sqrt(1.0 - b2**self.t)
        for name, p in self.params.items():
            decay = 1.0 - lr * self.weight_decay if self.decay[name] else 1.0
            update = partial(
                _update_for(p),
                b1=b1,
                b2=b2,
                decay=decay,
                v_correction=v_correction,
                eps=self.eps,
                step_size=step_size,
            )
            rowwise(update, p, grads[name], self.m[name], self.v[name])

    def state_dict(self) -> dict:
        """``{"t": int, "m": {name: array}, "v": {name: array}, "hyper": {...}}``."""
        return {
            "t": self.t,
            "m": self.m,
            "v": self.v,
            "hyper": {
                "lr": self.lr,
                "beta1": self.beta1,
                "beta2": self.beta2,
                "eps": self.eps,
                "weight_decay": self.weight_decay,
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore ``t`` and the moments (copied in place; shapes must match the parameters)."""
        for key in ("m", "v"):
            missing = sorted(set(self.params) - set(state[key]))
            if missing:
                raise ValueError(f"optimizer state: {key} lacks parameters {missing}")
            for name, mine in getattr(self, key).items():
                src = state[key][name]
                if tuple(src.shape) != tuple(mine.shape):
                    raise ValueError(
                        f"optimizer state: {key}[{name!r}] has shape {tuple(src.shape)}, "
                        f"expected {tuple(mine.shape)}"
                    )
                mine[...] = array_module(mine).asarray(src)
        self.t = int(state["t"])


def _update_for(p):
    """:func:`adamw_update`, or on CuPy what the installed GPU kernels choose (kernel 9
    with ``--fused``)."""
    kernels = backend.gpu_kernels()
    if kernels is None or array_module(p) is np:
        return adamw_update
    return kernels.adamw_update_for(p)


def adamw_update(p, g, m, v, *, b1, b2, decay, v_correction, eps, step_size):
    """One AdamW update of (rows of) a parameter ``p`` from its gradient ``g``, in place.

    ``m`` and ``v`` (the moments, shaped like ``p``) are updated too; ``decay`` is the
    decoupled weight-decay factor ``1 - lr * weight_decay`` (1.0: none), ``v_correction`` is
    ``1 / sqrt(1 - beta2^t)`` and ``step_size`` is ``lr / (1 - beta1^t)``.
    """
    xp = array_module(p)
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    v += (1.0 - b2) * (g * g)
    if decay != 1.0:
        p *= decay
    denom = xp.sqrt(v)
    denom *= v_correction
    denom += eps
    update = xp.divide(m, denom, out=denom)
    update *= step_size
    p -= update
