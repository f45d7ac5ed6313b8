"""A training loop in Python over the library (ctypes binding): byte-level LLaMA on a text
file, AdamW, validation loss and the Sink metric every few steps, one JSON line per
evaluation. This is the script the defaults of `attnsink study` were chosen with
(docs/results.md, "How the defaults were chosen").

    PYTHONPATH=python ASINK_NUM_THREADS=1 /usr/bin/python3 examples/python/train_loop.py \\
        '{"attn": "softmax", "dim": 64, "ffn": 128, "B": 16, "lr": 3e-3, "wd": 1.0, "minutes": 5}'

Keys (all optional): corpus, attn, layers, dim, heads, ffn, T, B, lr, wd, steps, minutes,
eval_every, bos, seed, label. It splits the corpus 95/5 by position like the program; its
batches come from numpy's generator, so its data order differs from `attnsink train`'s.
"""
import json
import sys
import time

import numpy as np

import attnsink


def run(corpus="build/corpus/kjv.txt", attn="softmax", layers=4, dim=128, heads=4, ffn=256,
        T=128, B=32, lr=2e-3, wd=0.5, steps=1000, minutes=None, eval_every=100, bos=True,
        seed=0, label=""):
    data = np.frombuffer(open(corpus, "rb").read(), dtype=np.uint8).astype(np.int32)
    split = len(data) * 95 // 100
    train, val = data[:split], data[split:]
    cfg = {"model_type": "llama", "vocab_size": 257 if bos else 256, "hidden_size": dim,
           "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": heads, "rms_norm_eps": 1e-5, "max_position_embeddings": T,
           "tie_word_embeddings": False, "attnsink": {"attn": attn}}
    m = attnsink.Model.create(cfg, seed=seed)
    opt = attnsink.AdamW(m, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=wd, clip=1.0)
    opt.schedule("constant", warmup=100)
    rng = np.random.default_rng(seed)
    body = T - 1 if bos else T

    def windows(src, starts, length):
        x = np.stack([src[i:i + length + 1] for i in starts])
        if bos:
            x = np.concatenate([np.full((len(starts), 1), 256, np.int32), x], 1)
        return x[:, :-1], x[:, 1:]

    # the probe of the study: the first 100 windows of 64 tokens of the validation part
    pl = 63 if bos else 64
    probe = np.stack([val[i * pl:(i + 1) * pl] for i in range(100)])
    if bos:
        probe = np.concatenate([np.full((100, 1), 256, np.int32), probe], 1)
    val_starts = np.arange(64) * ((len(val) - T - 2) // 64)
    t0, step = time.time(), 0
    while True:
        x, y = windows(train, rng.integers(0, len(train) - T - 2, B), body)
        loss = m.loss(x, y)
        m.backward()
        opt.step()
        step += 1
        done = step >= steps or (minutes and time.time() - t0 > minutes * 60)
        if step % eval_every == 0 or done:
            vx, vy = windows(val, val_starts, body)
            vl = np.mean([m.eval_loss(vx[i:i + 16], vy[i:i + 16]) for i in range(0, 64, 16)])
            r = m.sink_stats(probe, eps=0.3)
            a0 = r["importance"][:, :, :, 0].mean(axis=(0, 2))
            print(json.dumps({"label": label, "attn": attn, "step": step, "tok": step * B * T,
                              "sec": round(time.time() - t0, 1), "train": round(float(loss), 3),
                              "val": round(float(vl), 3), "sink1": round(float(r["sink"][0]), 2),
                              "a0": [round(float(v), 3) for v in a0]}), flush=True)
        if done:
            break


if __name__ == "__main__":
    run(**(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
