#!/usr/bin/python3
"""PyTorch eager twin of bench_train: one training-step JSON line per model.

    torch_train.py [--threads N|best] [--match-blas-threads] [--models study60m,tiny,study]
                   [--steps S] [--batch B]

The same models as bench_train.c, written as a compact LLaMA in plain PyTorch (float32):
embedding, pre-norm blocks (RMSNorm -> q,k,v projections, rotate-half RoPE, causal softmax
attention through scaled_dot_product_attention(is_causal=True), o projection -> residual ->
RMSNorm -> SwiGLU -> residual), final RMSNorm, untied head, mean cross-entropy.
One step = loss forward + backward + clip_grad_norm_(1.0) + torch.optim.AdamW (lr 4e-4,
betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on 2-D weights and the embedding only, as the
library) + zero_grad(set_to_none=True). The same tokens as bench_train (same generator).
Two warm-up steps, then the mean of S timed steps (default 5).

FLOPs per token, as bench_train.c: 6 N + 6 L T C, N = the parameters of the matmuls, head
V x C included, embedding lookup excluded; MFU against torch.mm 1024^3 float32 measured in
the same run with the same thread count (at start and after each model, the best so far). --threads best (the default) runs 1 and 2 threads
in subprocesses and adds a line with "threads": "best" per model (highest tokens/s). Each record
names the BLAS mapped into the process ("blas") and its thread setting ("blas_threads";
--match-blas-threads gives the BLAS the same thread count as PyTorch).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bench_common as tbc  # noqa: E402

# name: (layers, heads, width, SwiGLU width, vocab, T, batch) -- as bench_train.c's table.
SHAPES = {
    "study60m": (10, 8, 768, 1536, 50432, 256, 8),
    "tiny": (4, 4, 128, 256, 256, 128, 32),
    "study": (4, 4, 64, 128, 257, 128, 16),
}


def build_model(L, H, C, F, V, T, eps=1e-5, theta=10000.0, seed=0):
    import torch
    import torch.nn as nn
    import torch.nn.functional as Fn

    def sdpa_causal(q, k, v):
        if hasattr(Fn, "scaled_dot_product_attention"):
            return Fn.scaled_dot_product_attention(q, k, v, is_causal=True)
        return Fn._scaled_dot_product_attention(q, k, v, is_causal=True)[0]  # torch 1.13

    class RMSNorm(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight

    def rotate_half(x):
        a, b = x.chunk(2, dim=-1)
        return torch.cat((-b, a), dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm = RMSNorm(C)
            self.q = nn.Linear(C, C, bias=False)
            self.k = nn.Linear(C, C, bias=False)
            self.v = nn.Linear(C, C, bias=False)
            self.o = nn.Linear(C, C, bias=False)
            self.mlp_norm = RMSNorm(C)
            self.gate = nn.Linear(C, F, bias=False)
            self.up = nn.Linear(C, F, bias=False)
            self.down = nn.Linear(F, C, bias=False)

        def forward(self, x, cos, sin):
            Bn, Tn, _ = x.shape
            h = self.attn_norm(x)
            q, k, v = (p(h).view(Bn, Tn, H, C // H).transpose(1, 2) for p in (self.q, self.k, self.v))
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            a = sdpa_causal(q, k, v).transpose(1, 2).reshape(Bn, Tn, C)
            x = x + self.o(a)
            h = self.mlp_norm(x)
            return x + self.down(Fn.silu(self.gate(h)) * self.up(h))

    class LLaMA(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, C)
            self.layers = nn.ModuleList(Block() for _ in range(L))
            self.norm = RMSNorm(C)
            self.head = nn.Linear(C, V, bias=False)
            D = C // H
            inv = theta ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
            ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
            ang = torch.cat((ang, ang), dim=-1)
            self.register_buffer("cos", ang.cos(), persistent=False)
            self.register_buffer("sin", ang.sin(), persistent=False)

        def forward(self, tokens, targets):
            x = self.embed(tokens)
            for blk in self.layers:
                x = blk(x, self.cos, self.sin)
            logits = self.head(self.norm(x))
            return Fn.cross_entropy(logits.view(-1, V), targets.view(-1))

    torch.manual_seed(seed)
    m = LLaMA()
    # The library's initialisation: normal, std sqrt(2 / (5 fan_in)); FFN output 1/sqrt(F)/L.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                std = (1.0 / F ** 0.5 / L) if name.endswith("down.weight") else (2.0 / (5 * p.shape[1])) ** 0.5
                p.normal_(0.0, std)
    return m


def lcg_tokens(B, T, V):
    """bench_train.c's tokens: an LCG (seed 12345) drawing B sequences of T+1 ids."""
    import torch
    st, seq = 12345, []
    for _ in range(B * (T + 1)):
        st = (st * 1664525 + 1013904223) & 0xFFFFFFFF
        seq.append((st >> 8) % V)
    s = torch.tensor(seq, dtype=torch.long).view(B, T + 1)
    return s[:, :-1].contiguous(), s[:, 1:].contiguous()


def run_model(name, B, threads, steps, roof):
    import torch
    L, H, C, F, V, T, _ = SHAPES[name]
    t0 = time.perf_counter()
    m = build_model(L, H, C, F, V, T)
    decay = [p for p in m.parameters() if p.dim() == 2]
    other = [p for p in m.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=4e-4, betas=(0.9, 0.95), eps=1e-8)
    tok, tgt = lcg_tokens(B, T, V)
    print(f"{name}: B={B} T={T}: model and optimizer created in {time.perf_counter() - t0:.2f} s",
          file=sys.stderr)
    phase = [0.0, 0.0, 0.0]
    loss = float("nan")
    for i in range(2 + steps):
        t0 = time.perf_counter()
        lv = m(tok, tgt)
        t1 = time.perf_counter()
        lv.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        loss = lv.item()
        if i < 2:
            print(f"{name}: warm-up step {i + 1}: {t3 - t0:.2f} s", file=sys.stderr)
        else:
            phase[0] += t1 - t0
            phase[1] += t2 - t1
            phase[2] += t3 - t2
    phase = [p / steps for p in phase]
    sec = sum(phase)
    N = sum(p.numel() for n, p in m.named_parameters() if p.dim() == 2 and not n.startswith("embed"))
    fpt = 6.0 * N + 6.0 * L * T * C
    tps = B * T / sec
    roof = max(roof, tbc.torch_roof(threads))  # again after the steps, as bench_train.c
    rec = {"bench": "torch_train", "model": name, "B": B, "T": T, "threads": threads,
           "steps": steps, "seconds_per_step": round(sec, 4), "tokens_per_s": round(tps, 1),
           "flops_per_token": int(fpt), "matmul_params": N, "gflops": round(fpt * tps / 1e9, 2),
           "roof_gflops": round(roof, 2), "mfu": round(fpt * tps / (roof * 1e9), 3),
           "loss": round(loss, 4), "forward_s": round(phase[0], 4), "backward_s": round(phase[1], 4),
           "optimizer_s": round(phase[2], 4)}
    rec.update(tbc.common_fields(threads))
    rec["threads"] = threads
    tbc.dump(rec)
    return roof


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tbc.add_threads_arg(p)
    p.add_argument("--models", default="study60m,tiny")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=8, help="batch of study60m (tiny: 32)")
    args = p.parse_args()
    models = args.models.split(",")
    for name in models:
        if name not in SHAPES:
            sys.exit(f"unknown model '{name}' ({', '.join(SHAPES)})")
    if args.steps < 1 or args.batch < 1:
        sys.exit("--steps and --batch must be >= 1")
    if args.threads == "best":
        argv = ["--models", args.models, "--steps", str(args.steps), "--batch", str(args.batch)]
        argv += tbc.best_argv(args)
        return tbc.run_best(os.path.abspath(__file__), argv, key=lambda r: r["model"],
                            better=lambda a, b: a["tokens_per_s"] > b["tokens_per_s"])
    threads = int(args.threads)
    tbc.match_blas_threads(args, threads)
    import torch
    tbc.set_threads(threads)
    roof = tbc.torch_roof(threads)
    print(f"torch {torch.__version__}, BLAS {','.join(tbc.blas_in_use())}: torch.mm roof "
          f"{roof:.2f} GFLOP/s with {threads} threads, malloc {tbc.malloc_mode()}", file=sys.stderr)
    for name in models:
        roof = run_model(name, args.batch if name == "study60m" else SHAPES[name][6], threads, args.steps, roof)
    return 0


if __name__ == "__main__":
    sys.exit(main())
