"""The GPT of :mod:`minireason.nn.model` in PyTorch eager: a reference to compare against.

The same architecture, written with ``torch.nn`` and ``F.scaled_dot_product_attention``, with
our weights copied in. Tests check that losses, gradients and AdamW steps agree with it, and
``minireason bench train`` times it. PyTorch is never a dependency of the package: only this
module imports it, and only when called.
"""

from __future__ import annotations

import numpy as np

from minireason.nn.model import GPT


def build_torch_model(model: GPT):
    """The same GPT in PyTorch eager, with ``model``'s weights copied in (float32 or float64)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    cfg = model.config
    C, H = cfg.n_embd, cfg.n_head

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = (
                nn.LayerNorm(C, eps=cfg.layernorm_eps),
                nn.LayerNorm(C, eps=cfg.layernorm_eps),
            )
            self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.fc, self.fc_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x, cache=None, position=None):
            """``x`` ``(B, T, C)``. With ``cache`` (this layer's ``[K, V]``, each
            ``(B, H, block_size, D)``): prefill (``position`` None) writes the keys and
            values of all T positions; a decode step (T = 1, ``position`` the index the new
            token goes to) writes one and attends over the cache up to it."""
            B, T, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
            if cache is None or position is None:
                if cache is not None:
                    cache[0][:, :, :T], cache[1][:, :, :T] = k, v
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                cache[0][:, :, position], cache[1][:, :, position] = k[:, :, 0], v[:, :, 0]
                keys, values = cache[0][:, :, : position + 1], cache[1][:, :, : position + 1]
                y = F.scaled_dot_product_attention(q, keys, values)
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab_size, C)
            self.wpe = nn.Embedding(cfg.block_size, C)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layer))
            self.ln_f = nn.LayerNorm(C, eps=cfg.layernorm_eps)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe.weight[:T]
            for block in self.blocks:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

        def logits_cached(self, idx, caches, position=None):
            """Next-token logits ``(B, V)`` of the last position, filling ``caches`` (one
            ``[K, V]`` per layer): the whole of ``idx`` ``(B, T)`` when ``position`` is None
            (prefill), else one new token per row at ``position`` (a decode step)."""
            T = idx.shape[1]
            pos = self.wpe.weight[:T] if position is None else self.wpe.weight[position]
            x = self.wte(idx) + pos
            for block, cache in zip(self.blocks, caches, strict=True):
                x = block(x, cache, position)
            return self.ln_f(x[:, -1]) @ self.wte.weight.T

    net = TorchGPT().to(getattr(torch, cfg.dtype))
    net.n_head = H
    p = {k: torch.from_numpy(np.array(v)) for k, v in model.params.items()}
    with torch.no_grad():
        net.wte.weight.copy_(p["wte"])
        net.wpe.weight.copy_(p["wpe"])
        net.ln_f.weight.copy_(p["ln_f.w"])
        net.ln_f.bias.copy_(p["ln_f.b"])
        for i, blk in enumerate(net.blocks):
            pairs = [
                (blk.ln1, "ln1"),
                (blk.ln2, "ln2"),
                (blk.qkv, "attn.w_qkv"),
                (blk.proj, "attn.w_proj"),
                (blk.fc, "mlp.w_fc"),
                (blk.fc_proj, "mlp.w_proj"),
            ]
            for mod, name in pairs:
                if name.startswith("ln"):
                    mod.weight.copy_(p[f"h.{i}.{name}.w"])
                    mod.bias.copy_(p[f"h.{i}.{name}.b"])
                else:  # ours is (C_in, C_out), torch's Linear is (C_out, C_in)
                    mod.weight.copy_(p[f"h.{i}.{name}"].T)
                    mod.bias.copy_(p[f"h.{i}.{name.replace('.w_', '.b_')}"])
    return net


def sample_with_cache(
    net,
    prompts,
    n_samples: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int = 0,
):
    """``n_samples`` continuations of each prompt (lists of ids, all of one length) by the
    PyTorch twin with a KV cache, as :func:`minireason.reason.generate.generate` makes them:
    one prefill, its cache copied per sample (rows prompt-major), then ``max_new_tokens``
    decode steps of temperature and nucleus (top-p) sampling; no early stop, so the work is
    the same whatever is sampled. Returns the sampled ids ``(rows, max_new_tokens)``."""
    import torch

    if len({len(p) for p in prompts}) != 1:
        raise ValueError("sample_with_cache: the prompts must all have one length")
    block_size, C = net.wpe.weight.shape
    shape = (len(prompts), net.n_head, block_size, C // net.n_head)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        caches = [[torch.zeros(shape), torch.zeros(shape)] for _ in net.blocks]
        logits = net.logits_cached(torch.tensor(prompts, dtype=torch.long), caches)
        logits = logits.repeat_interleave(n_samples, dim=0)
        caches = [
            [k.repeat_interleave(n_samples, 0), v.repeat_interleave(n_samples, 0)]
            for k, v in caches
        ]
        out = torch.empty((logits.shape[0], max_new_tokens), dtype=torch.long)
        for t in range(max_new_tokens):
            probs = torch.softmax(logits / temperature, dim=-1)
            ranked, order = torch.sort(probs, dim=-1, descending=True)
            ranked = ranked * ((torch.cumsum(ranked, dim=-1) - ranked) < top_p)
            token = order.gather(-1, torch.multinomial(ranked, 1, generator=generator))
            out[:, t] = token[:, 0]
            if t + 1 < max_new_tokens:
                logits = net.logits_cached(token, caches, len(prompts[0]) + t)
    return out
