#!/usr/bin/python3
"""Sink metrics (docs/attention.md) of a plain PyTorch model's attention maps with
attnsink.torch.SinkProbe: a small byte-level transformer built from nn.MultiheadAttention,
trained briefly on a text, then measured two ways that must agree:

  1. hooks: SinkProbe(model) finds the attention modules and takes the per-head maps each
     returns (need_weights=True, average_attn_weights=False);
  2. by hand: the model returns its maps (as HF models do with output_attentions=True) and
     the caller hands them over with probe.add_maps(maps).

Prints one JSON line: the Sink percentage of the first positions, the share of heads whose
importance on position 0 exceeds eps, and the attention entropy per layer.

    PYTHONPATH=python ATTNSINK_LIB=build/libattnsink.so /usr/bin/python3 \\
        examples/python/measure_maps.py [--steps 150] [--eps 0.3]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from torch import nn

from attnsink.torch import SinkProbe

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, mask):
        h = self.norm1(x)
        y, maps = self.attn(h, h, h, attn_mask=mask, need_weights=True,
                            average_attn_weights=False)  # maps (B, H, T, T)
        x = x + y
        return x + self.ff(self.norm2(x)), maps


class TinyLM(nn.Module):
    def __init__(self, layers=2, dim=64, heads=4, T=64):
        super().__init__()
        self.tok = nn.Embedding(256, dim)
        self.pos = nn.Embedding(T, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.head = nn.Linear(dim, 256)

    def forward(self, idx, output_attentions=False):
        T = idx.shape[1]
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        x = self.tok(idx) + self.pos(torch.arange(T))
        maps = []
        for b in self.blocks:
            x, m = b(x, mask)
            maps.append(m)
        logits = self.head(x)
        return (logits, tuple(maps)) if output_attentions else logits


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--n-eval", type=int, default=32)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--corpus", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    path = args.corpus or os.path.join(REPO, "build", "corpus", "kjv.txt")
    if not os.path.exists(path):
        path = os.path.join(REPO, "README.md")
    data = torch.from_numpy(np.frombuffer(open(path, "rb").read(), dtype=np.uint8)
                            .astype(np.int64))
    rng = np.random.default_rng(0)

    def batch(n):
        starts = rng.integers(0, data.numel() - args.T - 1, n)
        idx = torch.stack([data[s:s + args.T + 1] for s in starts])
        return idx[:, :-1], idx[:, 1:]

    model = TinyLM(T=args.T)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(args.steps):
        x, y = batch(args.B)
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    x, _ = batch(args.n_eval)
    model.eval()
    # 1. hooks on the nn.MultiheadAttention modules
    with SinkProbe(model, eps=args.eps) as probe, torch.no_grad():
        model(x)
        hooked = probe.stats()
    # 2. maps handed over by the caller (HF-style output_attentions)
    with SinkProbe(n_layer=len(model.blocks), eps=args.eps) as probe, torch.no_grad():
        _, maps = model(x, output_attentions=True)
        probe.add_maps(maps)
        manual = probe.stats()
    assert np.allclose(hooked["importance"], manual["importance"], atol=1e-6)
    assert np.allclose(hooked["sink"], manual["sink"])
    imp = manual["importance"]  # (N, L, H, Tk)
    print(json.dumps({
        "example": "measure_maps", "corpus": os.path.relpath(path, REPO), "train_steps": args.steps,
        "final_train_loss": round(float(loss), 4), "sequences": int(imp.shape[0]),
        "layers": int(imp.shape[1]), "heads": int(imp.shape[2]), "T": int(imp.shape[3]),
        "eps": args.eps,
        "sink_percent_first_positions": [round(float(v), 2) for v in manual["sink"][:4]],
        "mean_importance_position0_per_layer": [round(float(v), 4)
                                                for v in imp[:, :, :, 0].mean(axis=(0, 2))],
        "entropy_per_layer": [round(float(v), 4) for v in manual["entropy"].mean(axis=1)],
        "hooks_equal_manual": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
