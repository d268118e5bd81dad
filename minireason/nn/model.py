"""A compact decoder-only transformer (GPT-2 shape) with a hand-written backward pass.

    idx (B, T) -> token + position embedding -> n_layer x [pre-norm attention + MLP block]
        -> final LayerNorm -> logits = x @ wte.T (tied) -> masked cross-entropy

Parameters live in one flat dictionary ``model.params`` (name -> array) and, after
``backward()``, their gradients in ``model.grads`` under the same names::

    wte (V, C)   wpe (block_size, C)
    h.{i}.ln1.w, h.{i}.ln1.b, h.{i}.attn.w_qkv (C, 3C), h.{i}.attn.b_qkv, h.{i}.attn.w_proj (C, C),
    h.{i}.attn.b_proj, h.{i}.ln2.w, h.{i}.ln2.b, h.{i}.mlp.w_fc (C, 4C), h.{i}.mlp.b_fc,
    h.{i}.mlp.w_proj (4C, C), h.{i}.mlp.b_proj
    ln_f.w, ln_f.b
    copy.w_q (C, D), copy.w_k (C, D), copy.w_gate (C,), copy.b_gate (1,)   only with config.copy

With ``config.copy`` the model has a copy head (:mod:`minireason.nn.copy_head`): its output
distribution mixes the vocabulary with the tokens already in the context, and the logits it
returns are that mixture's log-probabilities.

On NumPy every layer is :mod:`minireason.nn.layers`' own (``REFERENCE_OPS``). On CuPy, once the
project's CUDA kernels are installed (``backend.use_gpu_kernels``; the CLI does it for
``--device cuda``), a forward with targets may run them instead (flash attention, fused
LayerNorm, GELU and cross-entropy, chosen by ``--attention`` and ``--fused``); a forward
without targets always forms the attention weights, which :meth:`GPT.attention_weights`
returns (a flash layer has none: None).

Usage::

    model = GPT(GPTConfig(vocab_size=4096))
    logits, loss = model.forward(idx, targets, loss_mask)   # keeps what backward needs
    model.backward()                                        # fills model.grads
    logits, _ = model.forward(idx, keep_cache=False)        # inference: nothing kept
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import numpy as np

from minireason import backend
from minireason.nn.copy_head import (
    copy_attention,
    copy_head_backward,
    copy_head_forward,
    copy_mixture,
    copy_param_shapes,
    copy_params,
)
from minireason.nn.layers import (
    BLOCK_PARAMS,
    REFERENCE_OPS,
    BlockCache,
    CrossEntropyCache,
    EmbeddingCache,
    LayerNormCache,
    LMHeadCache,
    block_attention,
    block_backward,
    block_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    lm_head_backward,
    lm_head_forward,
    log_softmax,
)
from minireason.nn.threads import blas_as_planned

DTYPES = ("float32", "float64")


@dataclass
class GPTConfig:
    """Model shape. ``n_embd`` must be divisible by ``n_head``; ``dtype`` float32 or float64.

    ``seed`` drives the initial weights and the dropout masks (drawn on the host, so NumPy
    and CuPy runs with the same seed agree). ``copy`` adds the copy head
    (:mod:`minireason.nn.copy_head`).
    """

    vocab_size: int = 4096
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    layernorm_eps: float = 1e-5
    dtype: str = "float32"
    seed: int = 0
    copy: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head}"
            )
        if not (is_number(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"GPTConfig.dropout must be a number in [0, 1), got {self.dropout!r}")
        if not (is_number(self.layernorm_eps) and self.layernorm_eps > 0):
            raise ValueError(
                f"GPTConfig.layernorm_eps must be a positive number, got {self.layernorm_eps!r}"
            )
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise ValueError(f"GPTConfig.seed must be an integer, got {self.seed!r}")
        if not isinstance(self.copy, bool):
            raise ValueError(f"GPTConfig.copy must be true or false, got {self.copy!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"GPTConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if np.dtype(self.dtype).type(self.layernorm_eps) == 0:
            raise ValueError(
                f"GPTConfig.layernorm_eps {self.layernorm_eps!r} is 0 in {self.dtype} (a "
                "LayerNorm of a constant row would divide by zero); use e.g. 1e-5"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """Build from a dict (e.g. a checkpoint's JSON); unknown keys raise ValueError."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"GPTConfig: unknown fields {unknown}")
        return cls(**d)


class GPTCache(NamedTuple):
    """What :meth:`GPT.backward` needs from the forward pass, one cache per layer."""

    embedding: EmbeddingCache
    dropout: object  # the embedding dropout mask, or None
    blocks: list[BlockCache]
    ln_f: LayerNormCache
    lm_head: LMHeadCache
    cross_entropy: CrossEntropyCache
    scored: object  # (n,) the token rows the head and the loss saw, or None for all of them
    n_tokens: int  # B * T
    copy_head: object  # CopyHeadCache, or None without a copy head
    ops: object  # the layers.Ops the forward ran


def param_shapes(config: GPTConfig) -> dict:
    """``{name: shape}`` of every parameter of a model with ``config``, in creation order."""
    C = config.n_embd
    shapes = {"wte": (config.vocab_size, C), "wpe": (config.block_size, C)}
    per_block = {
        "ln1.w": (C,),
        "ln1.b": (C,),
        "attn.w_qkv": (C, 3 * C),
        "attn.b_qkv": (3 * C,),
        "attn.w_proj": (C, C),
        "attn.b_proj": (C,),
        "ln2.w": (C,),
        "ln2.b": (C,),
        "mlp.w_fc": (C, 4 * C),
        "mlp.b_fc": (4 * C,),
        "mlp.w_proj": (4 * C, C),
        "mlp.b_proj": (C,),
    }
    for i in range(config.n_layer):
        shapes.update({f"h.{i}.{name}": shape for name, shape in per_block.items()})
    shapes["ln_f.w"], shapes["ln_f.b"] = (C,), (C,)
    if config.copy:
        shapes.update(copy_param_shapes(C, config.n_head))
    return shapes


def training_bytes(config: GPTConfig, batch_size: int, block_size: int) -> int:
    """A lower bound on the memory a training step of a model with ``config`` takes, on
    ``batch_size`` sequences of ``block_size`` tokens: the parameters, their gradients and
    AdamW's two moments; per layer the activations the backward pass keeps (at least 16
    numbers per token and channel, and twice the attention weights); and the logits with
    their gradient. Computed in Python integers, so an absurd shape gives a huge number,
    never an overflow, and without listing every layer's parameters (a config may ask for
    2**70 layers)."""
    one_layer = param_shapes(replace(config, n_layer=1))
    block = sum(math.prod(shape) for name, shape in one_layer.items() if name.startswith("h."))
    rest = sum(math.prod(shape) for name, shape in one_layer.items() if not name.startswith("h."))
    n_params = rest + config.n_layer * block
    tokens = batch_size * block_size
    per_layer = 16 * tokens * config.n_embd + 2 * batch_size * config.n_head * block_size**2
    logits = 2 * tokens * config.vocab_size
    return np.dtype(config.dtype).itemsize * (4 * n_params + config.n_layer * per_layer + logits)


def init_params(config: GPTConfig) -> dict:
    """GPT-2 initialisation on the host, as NumPy arrays of ``config.dtype``.

    Weights ~ N(0, 0.02); the two residual projections of each block (``attn.w_proj``,
    ``mlp.w_proj``) ~ N(0, 0.02 / sqrt(2 n_layer)) so the residual stream's variance does not
    grow with depth; biases 0; LayerNorm weights 1.
    """
    rng = np.random.default_rng(config.seed)
    std = 0.02
    resid_std = std / math.sqrt(2 * config.n_layer)
    params = {}
    for name, shape in param_shapes(config).items():
        last = name.rsplit(".", 1)[-1]
        if name.endswith("w_proj"):
            params[name] = rng.normal(0.0, resid_std, size=shape).astype(config.dtype)
        elif len(shape) == 2:  # embeddings, w_qkv, w_fc
            params[name] = rng.normal(0.0, std, size=shape).astype(config.dtype)
        else:  # LayerNorm weight "w" = 1; every bias "b*" = 0
            params[name] = np.full(shape, 1.0 if last == "w" else 0.0, dtype=config.dtype)
    return params


def is_number(value) -> bool:
    """A real, finite number (not a bool, not a string, not None)."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _shape(a):
    """``a.shape``, or the type for something that is not an array (for error messages)."""
    return getattr(a, "shape", type(a))


class GPT:
    """The model: parameters, forward, backward. See the module docstring for names and shapes."""

    def __init__(self, config: GPTConfig):
        self.config = config
        xp = backend.xp()
        self.params = {name: xp.asarray(a) for name, a in init_params(config).items()}
        self.grads: dict = {}
        self.training = True
        self.dropout_rng = np.random.default_rng([config.seed, 1])  # host RNG for dropout masks
        self._cache = None
        self._attention = []

    # ------------------------------------------------------------------ bookkeeping

    def num_params(self) -> int:
        """Total number of parameters (the tied LM head is counted once)."""
        return int(sum(int(a.size) for a in self.params.values()))

    def decay_mask(self) -> dict:
        """``{name: True}`` for parameters that get weight decay: the 2-D Linear weights only
        (no biases, no LayerNorm weights, no embeddings)."""
        return {name: a.ndim == 2 and name not in ("wte", "wpe") for name, a in self.params.items()}

    def train(self) -> GPT:
        """Training mode: dropout on (if ``config.dropout > 0``)."""
        self.training = True
        return self

    def eval(self) -> GPT:
        """Evaluation mode: dropout off."""
        self.training = False
        return self

    def load_params(self, params: dict) -> None:
        """Copy ``params[name]`` into every parameter, in place (so references stay valid).

        Raises ValueError naming the parameter on a missing/extra name or a shape mismatch.
        """
        missing = sorted(set(self.params) - set(params))
        extra = sorted(set(params) - set(self.params))
        if missing or extra:
            raise ValueError(f"load_params: missing parameters {missing}, unexpected {extra}")
        xp = backend.xp()
        for name, a in params.items():
            if tuple(a.shape) != tuple(self.params[name].shape):
                raise ValueError(
                    f"load_params: parameter {name!r} has shape {tuple(a.shape)}, "
                    f"the model expects {tuple(self.params[name].shape)}"
                )
            self.params[name][...] = xp.asarray(a, dtype=self.config.dtype)  # in place

    def rng_state(self) -> dict:
        """The dropout RNG's state as plain ints (JSON-safe), for exact resume."""
        return self.dropout_rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.dropout_rng.bit_generator.state = state

    def attention_weights(self) -> list:
        """Attention weights of the last forward, one ``(B, H, T, T)`` array per layer (None
        for a layer that ran the flash kernels, which never form them: only on CuPy, in a
        forward with targets)."""
        return list(self._attention)

    def _ops(self, B: int, T: int, need_weights: bool):
        """The layer pairs a forward of ``(B, T)`` tokens runs (``layers.Ops``): the
        reference on NumPy; on CuPy what the installed GPU kernels choose
        (``backend.gpu_kernels().model_ops``), with the reference attention when
        ``need_weights``."""
        wte, kernels = self.params["wte"], backend.gpu_kernels()
        if kernels is None or backend.array_module(wte) is np:
            return REFERENCE_OPS
        cfg = self.config
        heads = (B, cfg.n_head, T, cfg.n_embd // cfg.n_head)
        return kernels.model_ops(heads, wte.dtype, need_weights)

    # ------------------------------------------------------------------ forward / backward

    @blas_as_planned
    def forward(self, idx, targets=None, loss_mask=None, keep_cache=True, all_logits=True):
        """Logits, and the loss when ``targets`` are given.

        Args:
            idx: ``(B, T)`` integer token ids, ``T <= block_size``.
            targets: ``(B, T)`` next-token ids, or None.
            loss_mask: ``(B, T)`` of 0/1, or None; the loss is the mean over tokens with mask 1.
            keep_cache: keep what :meth:`backward` needs (False for evaluation / generation).
            all_logits: False (with a ``loss_mask``): run the LM head and the loss only on the
                tokens the mask counts, and return no logits. The loss and the gradients are
                the same (up to float rounding); fine-tuning counts only the reason's tokens,
                so this skips most of the ``(B * T, V)`` work.

        Returns:
            ``logits`` ``(B, T, V)`` (None when ``all_logits`` is False) and ``loss`` (a
            Python float, or None without targets).
        """
        self._check_inputs(idx, targets, loss_mask)
        cfg = self.config
        p = self.params
        B, T = idx.shape
        rng = self.dropout_rng if (self.training and cfg.dropout > 0.0) else None
        ops = self._ops(B, T, need_weights=targets is None)
        x, emb_cache = embedding_forward(idx, p["wte"], p["wpe"])
        x, drop_cache = dropout_forward(x, cfg.dropout, rng)
        block_caches = []
        for i in range(cfg.n_layer):
            bp = {name: p[f"h.{i}.{name}"] for name in BLOCK_PARAMS}
            eps = cfg.layernorm_eps
            x, c = block_forward(x, bp, B, T, cfg.n_head, cfg.dropout, rng, eps, ops)
            block_caches.append(c)
        self._attention = [block_attention(c).weights for c in block_caches]
        x, lnf_cache = ops.layernorm_forward(x, p["ln_f.w"], p["ln_f.b"], cfg.layernorm_eps)
        xp = backend.array_module(x)
        mask = None if loss_mask is None else loss_mask.reshape(-1)
        scored = None  # the token rows the head sees: all of them
        if not all_logits and targets is not None and mask is not None:
            scored = xp.flatnonzero(mask)  # (n,) only the tokens the loss counts
            scored = scored if 0 < len(scored) < B * T else None
        head_in = x if scored is None else x[scored]
        logits, head_cache = lm_head_forward(head_in, p["wte"])  # (B*T or n, V)
        loss, ce_cache, copy_cache = None, None, None
        if targets is not None:
            flat_targets = targets.reshape(-1)
            if scored is None:
                loss_arr, ce_cache = ops.cross_entropy_forward(logits, flat_targets, mask)
            else:  # every scored row counts once: the mean over the mask's tokens
                loss_arr, ce_cache = ops.cross_entropy_forward(logits, flat_targets[scored])
            if cfg.copy:  # the loss is the mixture's NLL, with the same per-token weights
                rows = xp.arange(B * T) if scored is None else scored
                logp, copy_cache = copy_head_forward(
                    x, idx, rows, flat_targets[rows], -ce_cache.nll, copy_params(p)
                )
                loss_arr = -(logp * ce_cache.weights).sum()
            loss = float(loss_arr)
        if keep_cache and targets is not None:
            self._cache = GPTCache(
                emb_cache,
                drop_cache,
                block_caches,
                lnf_cache,
                head_cache,
                ce_cache,
                scored,
                B * T,
                copy_cache,
                ops,
            )
        else:
            self._cache = None
        if not all_logits:
            return None, loss
        if cfg.copy:
            logits = self._copy_logprobs(x, idx, logits)
        return logits.reshape(B, T, -1), loss

    @blas_as_planned
    def backward(self) -> dict:
        """Gradients of the last forward's loss; fills and returns ``self.grads``.

        Needs a preceding ``forward(idx, targets, ..., keep_cache=True)``; the cache is used
        once and released.
        """
        if self._cache is None:
            raise RuntimeError(
                "backward() needs a forward(idx, targets) with keep_cache=True first"
            )
        cache, self._cache = self._cache, None
        g = {}
        ce = cache.cross_entropy
        dx_copy = None
        if cache.copy_head is not None:  # the vocabulary's share of each token's gradient
            dlogp_vocab, dx_copy, copy_grads = copy_head_backward(-ce.weights, cache.copy_head)
            g.update(copy_grads)
            ce = ce._replace(weights=-dlogp_vocab)
        dlogits = cache.ops.cross_entropy_backward(ce)
        dx, dwte_head = lm_head_backward(dlogits, cache.lm_head)
        if cache.scored is not None:  # the tokens the head did not see get no gradient
            dx_all = backend.array_module(dx).zeros((cache.n_tokens, dx.shape[1]), dx.dtype)
            dx_all[cache.scored] = dx
            dx = dx_all
        if dx_copy is not None:
            dx = dx + dx_copy
        dx, g["ln_f.w"], g["ln_f.b"] = cache.ops.layernorm_backward(dx, cache.ln_f)
        for i in reversed(range(self.config.n_layer)):
            dx, bg = block_backward(dx, cache.blocks[i])
            for name, grad in bg.items():
                g[f"h.{i}.{name}"] = grad
        dx = dropout_backward(dx, cache.dropout)
        dwte, g["wpe"] = embedding_backward(dx, cache.embedding)
        dwte += dwte_head  # tied weight: embedding use + LM-head use
        g["wte"] = dwte
        self.grads = {name: g[name] for name in self.params}
        return self.grads

    # ------------------------------------------------------------------ copy head

    def _copy_logprobs(self, x, idx, logits):
        """``(B * T, V)`` log-probabilities of the generate/copy mixture at every position."""
        B, T = idx.shape
        params = copy_params(self.params)
        _, _, a = copy_attention(x, params["copy.w_q"], params["copy.w_k"], B, T)
        sources = backend.array_module(idx).repeat(idx, T, axis=0)  # (B * T, T): row b*T+t
        logp, _ = copy_mixture(logits, x, a.reshape(B * T, T), sources, params)
        return logp

    # ------------------------------------------------------------------ scoring

    @blas_as_planned
    def token_logprobs(self, idx, targets):
        """``log p(targets[b, t] | idx[b, :t+1])`` for every position, ``(B, T)``; no cache kept."""
        logits, _ = self.forward(idx, keep_cache=False)
        self._check_inputs(idx, targets, None)
        xp = backend.array_module(logits)
        B, T, V = logits.shape
        logp = log_softmax(logits.reshape(B * T, V))
        return logp[xp.arange(B * T), targets.reshape(-1)].reshape(B, T)

    # ------------------------------------------------------------------ validation

    def _check_inputs(self, idx, targets, loss_mask):
        """Raise ValueError naming the argument and its shape for anything the model cannot take."""
        cfg = self.config
        if not hasattr(idx, "ndim") or idx.ndim != 2:
            raise ValueError(f"idx must be a 2-D (B, T) integer array, got shape {_shape(idx)}")
        if idx.dtype.kind not in "iu":
            raise ValueError(f"idx must hold integer token ids, got dtype {idx.dtype}")
        B, T = idx.shape
        if B < 1 or T < 1:
            raise ValueError(f"idx must be non-empty, got shape {idx.shape}")
        if T > cfg.block_size:
            raise ValueError(f"idx has T={T} (shape {idx.shape}) > block_size={cfg.block_size}")
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= cfg.vocab_size:
            raise ValueError(
                f"idx (shape {idx.shape}) holds token ids in [{lo}, {hi}], "
                f"outside [0, {cfg.vocab_size})"
            )
        if targets is not None:
            if not hasattr(targets, "shape") or tuple(targets.shape) != (B, T):
                raise ValueError(
                    f"targets must have the shape of idx {idx.shape}, got {_shape(targets)}"
                )
            if targets.dtype.kind not in "iu":
                raise ValueError(f"targets must hold integer token ids, got dtype {targets.dtype}")
            lo, hi = int(targets.min()), int(targets.max())
            if lo < 0 or hi >= cfg.vocab_size:
                raise ValueError(
                    f"targets hold token ids in [{lo}, {hi}], outside [0, {cfg.vocab_size})"
                )
        if loss_mask is not None:
            if targets is None:
                raise ValueError("loss_mask given without targets")
            if not hasattr(loss_mask, "shape") or tuple(loss_mask.shape) != (B, T):
                raise ValueError(
                    f"loss_mask must have the shape of idx {idx.shape}, got {_shape(loss_mask)}"
                )
            if not bool(((loss_mask == 0) | (loss_mask == 1)).all()):
                raise ValueError(f"loss_mask {loss_mask.shape} must hold only 0 and 1")
            if not bool(loss_mask.any()):
                raise ValueError(
                    f"loss_mask {loss_mask.shape} selects no token: the loss is undefined"
                )
