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

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
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

    net = TorchGPT().to(getattr(torch, cfg.dtype))
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
