#!/usr/bin/python3
"""PyTorch twin of bench_decode: cached single-token decoding, one JSON line per (model, batch).

    torch_decode.py [--threads N|best] [--models study60m,tiny,study] [--batch 1,8] [--cache 2048]
                    [--steps 32]

The models of torch_train.py (its build_model: same shapes, same initialisation, seed 0),
decoded in float32 under torch.inference_mode() by a loop written for speed: per layer one
fused q|k|v weight (3C x C) and one fused gate|up weight (2F x C), concatenated once from the
model's own weights; keys (after rotate-half RoPE) and values in cache tensors (L, B, H,
max_len, D) allocated once at the final length and written in place (no torch.cat per step);
attention of the new query as q·Kᵀ -> softmax -> ·V over the cache's first n positions (views,
no copy). Per model and batch B: the cache is prefilled with `cache` tokens per sequence (in
chunks of 256, causal mask inside a chunk; no logits), two untimed single-token steps, then
`steps` timed ones with the logits (B, vocab) computed; tokens_per_s = B * steps / seconds.
The same tokens as bench_decode (the LCG of bench_train, seed 12345).

bytes_per_token as bench_decode.c: (4 N + B * 2 L cache H D * 4) / B, N the matmul weights
with the head, the embedding excluded. The roof: torch.sum of a 1 GiB float32 tensor, best of
5, same thread count, right after the timed steps; bandwidth_fraction = bytes_per_token *
tokens_per_s / roof. --threads N sets torch.set_num_threads(N) and, unless they are set
already, OPENBLAS_NUM_THREADS and BLIS_NUM_THREADS (the BLAS PyTorch's matmuls run in);
--threads best (the default) runs 1 and 2 threads in subprocesses and adds a "threads":
"best" line per (model, batch) (highest tokens/s). The BLAS actually loaded is reported
("blas": the libraries mapped into the process).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bench_common as tbc  # noqa: E402
from torch_train import SHAPES, build_model  # noqa: E402

WARM = 2
PREFILL_CHUNK = 256
EPS = 1e-5
THETA = 10000.0


def lcg(n, V, st):
    """bench_decode.c's lcg_tokens: n ids from the LCG state st; returns (ids, st)."""
    out = []
    for _ in range(n):
        st = (st * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append((st >> 8) % V)
    return out, st


class CachedLLaMA:
    """torch_train.py's LLaMA with a key/value cache, for B sequences of up to max_len."""

    def __init__(self, m, L, H, C, F, V, B, max_len):
        import torch
        D = C // H
        self.H, self.C, self.F, self.D, self.B = H, C, F, D, B
        self.embed = m.embed.weight.detach()
        self.norm = m.norm.weight.detach()
        self.head = m.head.weight.detach()
        self.layers = []
        for blk in m.layers:
            self.layers.append((
                blk.attn_norm.weight.detach(),
                torch.cat((blk.q.weight, blk.k.weight, blk.v.weight)).detach().contiguous(),
                blk.o.weight.detach(),
                blk.mlp_norm.weight.detach(),
                torch.cat((blk.gate.weight, blk.up.weight)).detach().contiguous(),
                blk.down.weight.detach()))
        self.kc = torch.zeros(L, B, H, max_len, D)
        self.vc = torch.zeros(L, B, H, max_len, D)
        inv = THETA ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
        ang = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
        ang = torch.cat((ang, ang), dim=-1)
        self.cos, self.sin = ang.cos(), ang.sin()
        self.scale = D ** -0.5
        self.n = 0

    def bytes(self):
        return self.kc.numel() * 4 * 2

    def forward(self, tok, logits=True):
        """tok (B, n) at positions self.n .. self.n + n - 1; returns logits (B, n, V) or None."""
        import torch
        import torch.nn.functional as Fn
        B, n = tok.shape
        H, C, D, p = self.H, self.C, self.D, self.n

        def rms(x, w):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w

        def rope(x, cos, sin):
            a, b = x.chunk(2, dim=-1)
            return x * cos + torch.cat((-b, a), dim=-1) * sin

        cos, sin = self.cos[p:p + n], self.sin[p:p + n]
        mask = None
        if n > 1:  # query i (position p + i) sees keys 0 .. p + i
            mask = torch.full((n, p + n), float("-inf")).triu_(p + 1)
        x = Fn.embedding(tok, self.embed)
        for l, (wn1, wqkv, wo, wn2, w13, w2) in enumerate(self.layers):
            qkv = Fn.linear(rms(x, wn1), wqkv).view(B, n, 3, H, D)
            q = rope(qkv[:, :, 0].transpose(1, 2), cos, sin) * self.scale
            self.kc[l, :, :, p:p + n] = rope(qkv[:, :, 1].transpose(1, 2), cos, sin)
            self.vc[l, :, :, p:p + n] = qkv[:, :, 2].transpose(1, 2)
            s = torch.matmul(q, self.kc[l, :, :, :p + n].transpose(-1, -2))  # (B, H, n, p + n)
            if mask is not None:
                s += mask
            o = torch.matmul(torch.softmax(s, dim=-1), self.vc[l, :, :, :p + n])  # (B, H, n, D)
            x = x + Fn.linear(o.transpose(1, 2).reshape(B, n, C), wo)
            g, u = Fn.linear(rms(x, wn2), w13).split(self.F, dim=-1)
            x = x + Fn.linear(Fn.silu(g) * u, w2)
        self.n += n
        return Fn.linear(rms(x, self.norm), self.head) if logits else None


def torch_bandwidth_roof(buf):
    """GB/s of torch.sum over buf (1 GiB, already written), best of 5."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        buf.sum()
        best = min(best, time.perf_counter() - t0)
    return buf.numel() * 4 / best / 1e9


def run_point(m, name, B, cache_len, steps, threads, roof_buf):
    import torch
    L, H, C, F, V, T, _ = SHAPES[name]
    dec = CachedLLaMA(m, L, H, C, F, V, B, cache_len + WARM + steps)
    ids, st = lcg(B * cache_len, V, 12345)
    prompt = torch.tensor(ids, dtype=torch.long).view(B, cache_len)
    ids, st = lcg(B * (WARM + steps), V, st)
    tok = torch.tensor(ids, dtype=torch.long).view(B, WARM + steps)
    t0 = time.perf_counter()
    for c0 in range(0, cache_len, PREFILL_CHUNK):
        dec.forward(prompt[:, c0:c0 + PREFILL_CHUNK], logits=False)
    prefill = time.perf_counter() - t0
    print(f"{name}: B={B}: prefill of {cache_len} positions in {prefill:.2f} s "
          f"({B * cache_len / prefill:.0f} tokens/s)", file=sys.stderr)
    dts = []
    logits = None
    for i in range(WARM + steps):
        one = tok[:, i:i + 1].contiguous()
        t1 = time.perf_counter()
        logits = dec.forward(one)
        t2 = time.perf_counter()
        if i >= WARM:
            dts.append(t2 - t1)
    total = sum(dts)
    roof = torch_bandwidth_roof(roof_buf)
    dts.sort()
    N = sum(p.numel() for n, p in m.named_parameters() if p.dim() == 2 and not n.startswith("embed"))
    wbytes = 4.0 * N
    kvbytes = 2.0 * L * cache_len * H * (C // H) * 4.0
    bpt = (wbytes + B * kvbytes) / B
    tps = B * steps / total
    rec = {"bench": "torch_decode", "impl": "torch", "model": name, "policy": "full", "B": B,
           "cache_len": cache_len, "steps": steps, "threads": threads,
           "tokens_per_s": round(tps, 2), "seconds_per_step": round(total / steps, 5),
           "step_min_s": round(dts[0], 5), "step_median_s": round(dts[len(dts) // 2], 5),
           "step_max_s": round(dts[-1], 5), "bytes_per_token": int(bpt),
           "weights_bytes": int(wbytes), "kv_bytes_per_seq": int(kvbytes),
           "cache_bytes": dec.bytes(), "gbs": round(bpt * tps / 1e9, 2),
           "roof_gbs": round(roof, 2), "bandwidth_fraction": round(bpt * tps / (roof * 1e9), 3),
           "prefill_s": round(prefill, 3), "prefill_tokens_per_s": round(B * cache_len / prefill, 1),
           "logits_sum": float(logits.sum())}
    rec.update(tbc.common_fields(threads))
    rec["blas"] = tbc.blas_in_use()
    tbc.dump(rec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tbc.add_threads_arg(p)
    p.add_argument("--models", default="study60m,tiny")
    p.add_argument("--batch", default="1,8", help="batch sizes, comma-separated")
    p.add_argument("--cache", type=int, default=2048, help="positions prefilled per sequence")
    p.add_argument("--steps", type=int, default=32)
    args = p.parse_args()
    models = args.models.split(",")
    for name in models:
        if name not in SHAPES:
            sys.exit(f"unknown model '{name}' ({', '.join(SHAPES)})")
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        batches = [0]
    if args.steps < 1 or args.cache < 1 or min(batches) < 1:
        sys.exit("--steps and --cache must be >= 1, --batch a list of sizes >= 1")
    if args.threads == "best":
        argv = ["--models", args.models, "--batch", args.batch, "--cache", str(args.cache),
                "--steps", str(args.steps)]
        return tbc.run_best(os.path.abspath(__file__), argv, key=lambda r: (r["model"], r["B"]),
                            better=lambda a, b: a["tokens_per_s"] > b["tokens_per_s"])
    threads = int(args.threads)
    # Read by the BLAS when it loads, so before torch is imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    os.environ.setdefault("BLIS_NUM_THREADS", str(threads))
    import torch
    tbc.set_threads(threads)
    roof_buf = torch.ones(1 << 28, dtype=torch.float32)  # 1 GiB, every page written
    print(f"torch {torch.__version__}, BLAS {','.join(tbc.blas_in_use())}: read roof "
          f"{torch_bandwidth_roof(roof_buf):.2f} GB/s (torch.sum of 1 GiB) with {threads} "
          f"threads, malloc {tbc.malloc_mode()}", file=sys.stderr)
    for name in models:
        L, H, C, F, V, T, _ = SHAPES[name]
        m = build_model(L, H, C, F, V, T)
        for B in batches:
            with torch.inference_mode():
                run_point(m, name, B, args.cache, args.steps, threads, roof_buf)
        del m
    return 0


if __name__ == "__main__":
    sys.exit(main())
