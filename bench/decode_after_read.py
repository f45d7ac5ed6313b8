"""Decoding speed of a precision="bf16" model (random, LLaMA-shaped: 8 layers of width 512,
vocabulary 32000) before and after reading its parameters once with Model.parameters(): a
library that hands out a writable pointer for that read must remake the bf16 weight copies at
every decoding step afterwards.

    PYTHONPATH=python /usr/bin/python3 bench/decode_after_read.py LABEL

To compare builds, run it once per build with that build's binding and library, e.g.
PYTHONPATH=OLD/python ATTNSINK_LIB=OLD/build/libattnsink.so.1.2.0 ... old.
"""
import sys, time
import numpy as np
import attnsink

cfg = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1376,
       "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 8,
       "max_position_embeddings": 256, "tie_word_embeddings": False}
m = attnsink.Model.create(cfg, seed=0, precision="bf16")
tok = np.arange(48, dtype=np.int32).reshape(1, 48) % 32000

def rate():
    best = 0.0
    for _ in range(3):
        with m.cache("full", max_len=64) as c:
            c.step(tok[:, :16])
            t0 = time.perf_counter()
            for t in range(16, 48):
                c.step(tok[:, t:t + 1])
            best = max(best, 32 / (time.perf_counter() - t0))
    return best

before = rate()
_ = m.parameters()
after = rate()
label = sys.argv[1] if len(sys.argv) > 1 else "run"
print("%s: library %s, decode tokens/s best of 3: %.1f before reading the parameters, %.1f after"
      % (label, attnsink.version(), before, after))
