#!/usr/bin/python3
"""attnsink.torch.Attention inside a PyTorch training step against PyTorch's own eager
attention, side by side: one JSON line per (scope, implementation, T), then one comparison
line per (scope, T) with the speed-up and the gradient agreement.

    PYTHONPATH=python ATTNSINK_LIB=build/libattnsink.so /usr/bin/python3 \\
        bench/torch_module_attention.py [--T 256,1024] [--threads 1] [--reps 5] [--spec softmax]

Cases: causal softmax (the spec may add sink=head: the eager side then appends the sink
logit to the softmax denominator), B=1, H=8, D=64, float32, forward + backward.
  scope "attention": out = att(q, k, v); out.backward(dout) on leaf q, k, v ((B,T,H,D) for
                     the module, (B,H,T,D) for the eager kernel, each its natural layout);
  scope "step":      a training step of one attention block, x (B,T,C=H*D) -> qkv Linear ->
                     attention -> out Linear -> mean square loss -> backward, identical
                     weights on both sides; the module reads q, k, v as strided slices of
                     the projection (converted once to contiguous, inside autograd).
Eager attention is F.scaled_dot_product_attention(is_causal=True) where torch has it
(>= 2.0), else F._scaled_dot_product_attention (Debian's 1.13: the math path, matmul +
softmax + matmul), or the explicit ops when a sink logit is needed.
Timing: best of --reps after one untimed repetition; torch and the library each get
--threads threads. Gradients: max |lib - eager| / max |eager| over dq, dk, dv (attention) or
over every weight gradient (step).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

import attnsink
from attnsink.torch import Attention

B, H, D = 1, 8, 64


def eager_attention(q, k, v, sinks=None):
    """q, k, v (B, H, T, D) -> (B, H, T, D), causal softmax."""
    T = q.shape[2]
    if sinks is None:
        if hasattr(F, "scaled_dot_product_attention"):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F._scaled_dot_product_attention(q, k, v, is_causal=True)[0]
    s = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    s = torch.cat([s, sinks.view(1, -1, 1, 1).expand(q.shape[0], -1, T, 1)], dim=-1)
    return torch.softmax(s, dim=-1)[..., :-1] @ v


def best_time(fn, reps):
    best = float("inf")
    for r in range(reps + 1):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        if r and dt < best:
            best = dt
    return best


def max_rel(a, b):
    return max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-30)) for x, y in zip(a, b))


def attention_case(T, spec, reps, sink):
    g = torch.Generator().manual_seed(T)
    att = Attention(spec, H, H, D)
    if sink:
        with torch.no_grad():
            att.sinks.copy_(torch.randn(H, generator=g))
    q, k, v, dout = (torch.randn(B, T, H, D, generator=g) for _ in range(4))
    ql, kl, vl = (x.clone().requires_grad_() for x in (q, k, v))
    qe, ke, ve = (x.transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
    doute = dout.transpose(1, 2).contiguous()
    se = att.sinks.detach().clone().requires_grad_() if sink else None

    def run_lib():
        for x in (ql, kl, vl):
            x.grad = None
        att.zero_grad(set_to_none=True)
        att(ql, kl, vl).backward(dout)

    def run_eager():
        for x in (qe, ke, ve):
            x.grad = None
        if se is not None:
            se.grad = None
        eager_attention(qe, ke, ve, se).backward(doute)

    t_lib = best_time(run_lib, reps)
    t_eager = best_time(run_eager, reps)
    lib_g = [ql.grad, kl.grad, vl.grad] + ([att.sinks.grad] if sink else [])
    eag_g = [x.grad.transpose(1, 2) for x in (qe, ke, ve)] + ([se.grad] if sink else [])
    return t_lib, t_eager, max_rel(lib_g, eag_g)


class Block(torch.nn.Module):
    def __init__(self, attn):
        super().__init__()
        self.qkv = torch.nn.Linear(H * D, 3 * H * D, bias=False)
        self.proj = torch.nn.Linear(H * D, H * D, bias=False)
        self.attn = attn  # None: eager
        self.sinks = None

    def forward(self, x):
        Bx, T, _ = x.shape
        qkv = self.qkv(x).view(Bx, T, 3, H, D)
        if self.attn is not None:
            y = self.attn(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        else:
            q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
            y = eager_attention(q, k, v, self.sinks).transpose(1, 2)
        return self.proj(y.reshape(Bx, T, H * D))


def step_case(T, spec, reps, sink):
    torch.manual_seed(T)
    lib_block = Block(Attention(spec, H, H, D))
    if sink:
        with torch.no_grad():
            lib_block.attn.sinks.normal_()
    eager_block = Block(None)
    eager_block.qkv.load_state_dict(lib_block.qkv.state_dict())
    eager_block.proj.load_state_dict(lib_block.proj.state_dict())
    if sink:
        eager_block.sinks = torch.nn.Parameter(lib_block.attn.sinks.detach().clone())
    x = torch.randn(B, T, H * D)

    def run(block):
        def f():
            block.zero_grad(set_to_none=True)
            if block.sinks is not None:
                block.sinks.grad = None
            block(x).pow(2).mean().backward()
        return f

    t_lib = best_time(run(lib_block), reps)
    t_eager = best_time(run(eager_block), reps)
    lib_g = [lib_block.qkv.weight.grad, lib_block.proj.weight.grad]
    eag_g = [eager_block.qkv.weight.grad, eager_block.proj.weight.grad]
    if sink:
        lib_g.append(lib_block.attn.sinks.grad)
        eag_g.append(eager_block.sinks.grad)
    return t_lib, t_eager, max_rel(lib_g, eag_g)


def load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--T", default="1024")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--spec", default="softmax")
    p.add_argument("--scopes", default="attention,step")
    args = p.parse_args()
    sink = "sink=head" in args.spec.replace(" ", "")
    if args.spec.replace(" ", "") not in ("softmax", "softmax,sink=head"):
        sys.exit("--spec: softmax or softmax,sink=head (the cases the eager side implements)")
    torch.set_num_threads(args.threads)
    attnsink.set_num_threads(args.threads)
    common = {"B": B, "H": H, "D": D, "spec": args.spec, "threads": args.threads,
              "torch_version": torch.__version__, "simd": attnsink.simd_level()}
    for T in (int(t) for t in args.T.split(",")):
        for scope in args.scopes.split(","):
            case = attention_case if scope == "attention" else step_case
            t_lib, t_eager, err = case(T, args.spec, args.reps, sink)
            for impl, t in (("attnsink.torch", t_lib), ("torch-eager", t_eager)):
                rec = {"bench": "torch_module_attention", "scope": scope, "mode": "fwdbwd",
                       "impl": impl, "T": T, "seconds": round(t, 6)}
                rec.update(common)
                print(json.dumps(rec), flush=True)
            rec = {"bench": "torch_module_attention", "scope": scope, "mode": "fwdbwd",
                   "impl": "compare", "T": T, "speedup": round(t_eager / t_lib, 3),
                   "grad_max_rel_err": float("%.3g" % err), "loadavg_1min": load_average()}
            rec.update(common)
            print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
