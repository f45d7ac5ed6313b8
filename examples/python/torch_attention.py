#!/usr/bin/python3
"""A small byte-level PyTorch language model whose attention is attnsink.torch.Attention,
trained side by side with the same model on PyTorch's eager attention: same initial
weights, same batches, same optimizer. One JSON line per evaluation with both losses; the
two loss curves agree to float tolerance at first and drift apart slowly, as any two
float32 implementations do.

    PYTHONPATH=python ATTNSINK_LIB=build/libattnsink.so /usr/bin/python3 \\
        examples/python/torch_attention.py [--steps 300] [--check 20] [--spec softmax,sink=head]

--check N: exit 1 unless the two losses agree within 1e-4 (relative) for the first N steps.
Text: build/corpus/kjv.txt (make corpus) if present, else README.md; --corpus PATH overrides.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

import attnsink
from attnsink.torch import Attention

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class EagerAttention(nn.Module):
    """Causal softmax attention from torch ops, with an optional per-head sink logit in the
    denominator: the computation of the spec softmax[,sink=head] (docs/attention.md)."""

    def __init__(self, n_head, sink):
        super().__init__()
        if sink:
            self.sinks = nn.Parameter(torch.zeros(n_head))
        else:
            self.sinks = None

    def forward(self, q, k, v):  # (B, T, H, D) like attnsink.torch.Attention
        B, T, H, D = q.shape
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        if self.sinks is not None:
            s = torch.cat([s, self.sinks.view(1, H, 1, 1).expand(B, H, T, 1)], dim=-1)
            p = torch.softmax(s, dim=-1)[..., :-1]
        else:
            p = torch.softmax(s, dim=-1)
        return (p @ v).transpose(1, 2)


class Block(nn.Module):
    def __init__(self, dim, n_head, attn):
        super().__init__()
        self.n_head = n_head
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.att = attn
        self.proj = nn.Linear(dim, dim, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        B, T, C = x.shape
        qkv = self.qkv(self.norm1(x)).view(B, T, 3, self.n_head, C // self.n_head)
        y = self.att(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        x = x + self.proj(y.reshape(B, T, C))
        return x + self.ff(self.norm2(x))


class ByteLM(nn.Module):
    def __init__(self, spec, layers, dim, n_head, T, eager):
        super().__init__()
        sink = "sink=head" in spec.replace(" ", "")

        def attn():
            if eager:
                return EagerAttention(n_head, sink)
            return Attention(spec, n_head, n_head, dim // n_head)
        self.tok = nn.Embedding(256, dim)
        self.pos = nn.Embedding(T, dim)
        self.blocks = nn.ModuleList(Block(dim, n_head, attn()) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 256, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


def read_text(path):
    for p in ([path] if path else [os.path.join(REPO, "build", "corpus", "kjv.txt"),
                                   os.path.join(REPO, "README.md")]):
        if os.path.exists(p):
            return p, np.frombuffer(open(p, "rb").read(), dtype=np.uint8)
    sys.exit("no text found (give --corpus)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="softmax,sink=head",
                    help="softmax or softmax,sink=head (what the eager twin implements)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--check", type=int, default=0)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.spec.replace(" ", "") not in ("softmax", "softmax,sink=head"):
        sys.exit("--spec: softmax or softmax,sink=head")
    # the same thread count on both sides (the library defaults to every online core)
    torch.set_num_threads(args.threads)
    attnsink.set_num_threads(args.threads)
    path, data = read_text(args.corpus)
    data = torch.from_numpy(data.astype(np.int64))

    torch.manual_seed(0)
    lib_model = ByteLM(args.spec, args.layers, args.dim, args.heads, args.T, eager=False)
    eager_model = ByteLM(args.spec, args.layers, args.dim, args.heads, args.T, eager=True)
    eager_model.load_state_dict(lib_model.state_dict())  # same names, same initial weights
    models = {"attnsink": lib_model, "eager": eager_model}
    opts = {n: torch.optim.AdamW(m.parameters(), lr=args.lr, weight_decay=0.01)
            for n, m in models.items()}
    seconds = {n: 0.0 for n in models}
    rng = np.random.default_rng(0)
    worst = 0.0
    print(json.dumps({"example": "torch_attention", "corpus": os.path.relpath(path, REPO),
                      "bytes": int(data.numel()), "spec": args.spec, "layers": args.layers,
                      "dim": args.dim, "heads": args.heads, "T": args.T, "B": args.B}),
          flush=True)
    for step in range(1, args.steps + 1):
        starts = torch.from_numpy(rng.integers(0, data.numel() - args.T - 1, args.B))
        idx = torch.stack([data[s:s + args.T] for s in starts])
        tgt = torch.stack([data[s + 1:s + args.T + 1] for s in starts])
        losses = {}
        for name, m in models.items():
            t0 = time.perf_counter()
            loss = nn.functional.cross_entropy(m(idx).reshape(-1, 256), tgt.reshape(-1))
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            seconds[name] += time.perf_counter() - t0
            losses[name] = float(loss)
        diff = abs(losses["attnsink"] - losses["eager"]) / max(1.0, abs(losses["eager"]))
        if step <= args.check:
            worst = max(worst, diff)
            if diff > 1e-4:
                print("FAIL: step %d: attnsink loss %.7f, eager %.7f" % (step, losses["attnsink"],
                                                                          losses["eager"]))
                return 1
        if step % args.eval_every == 0 or step == args.steps or step <= 3:
            print(json.dumps({"step": step, "loss_attnsink": round(losses["attnsink"], 6),
                              "loss_eager": round(losses["eager"], 6),
                              "rel_diff": float("%.3g" % diff)}), flush=True)
    rec = {"done": args.steps, "seconds_attnsink": round(seconds["attnsink"], 3),
           "seconds_eager": round(seconds["eager"], 3)}
    sinks = [[round(float(x), 3) for x in b.att.sinks.detach()] for b in lib_model.blocks
             if getattr(b.att, "sinks", None) is not None]
    if sinks:
        rec["sink_logits"] = sinks
    if args.check:
        rec["checked_steps"] = min(args.check, args.steps)
        rec["max_rel_diff_checked"] = float("%.3g" % worst)
    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
