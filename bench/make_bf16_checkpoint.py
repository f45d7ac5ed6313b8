#!/usr/bin/env python3
"""Writes a random LLaMA-shaped checkpoint in BF16, for the bf16-weights measurements of
docs/models.md and docs/performance.md (322.5 M parameters at the default 20 layers of width
1024, FFN 2816, 16 heads):

    /usr/bin/python3 bench/make_bf16_checkpoint.py DIR [LAYERS [WIDTH FFN HEADS KV_HEADS]]

e.g. `DIR 22 2048 5632 32 4` for TinyLlama-1.1B's shape (1.1 G parameters, 2.2 GB).
Matrices are N(0, 0.02) cut to bf16, norm weights 1; config.json and one model.safetensors."""
import json
import os
import struct
import sys

import numpy as np


if len(sys.argv) not in (2, 3, 7):
    sys.exit("usage: make_bf16_checkpoint.py DIR [LAYERS [WIDTH FFN HEADS KV_HEADS]]")
out, L = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20
C, F, H, Hkv = (int(x) for x in sys.argv[3:7]) if len(sys.argv) == 7 else (1024, 2816, 16, 16)
V, Ckv = 32000, C // H * Hkv
cfg = {"model_type": "llama", "vocab_size": V, "hidden_size": C, "intermediate_size": F,
       "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": Hkv,
       "max_position_embeddings": 2048, "tie_word_embeddings": False}
shapes = [("model.embed_tokens.weight", (V, C))]
for l in range(L):
    p = "model.layers.%d." % l
    shapes += [(p + "input_layernorm.weight", (C,)), (p + "self_attn.q_proj.weight", (C, C)),
               (p + "self_attn.k_proj.weight", (Ckv, C)), (p + "self_attn.v_proj.weight", (Ckv, C)),
               (p + "self_attn.o_proj.weight", (C, C)), (p + "post_attention_layernorm.weight", (C,)),
               (p + "mlp.gate_proj.weight", (F, C)), (p + "mlp.up_proj.weight", (F, C)),
               (p + "mlp.down_proj.weight", (C, F))]
shapes += [("model.norm.weight", (C,)), ("lm_head.weight", (V, C))]
header, off = {}, 0
for name, s in shapes:
    n = int(np.prod(s)) * 2
    header[name] = {"dtype": "BF16", "shape": list(s), "data_offsets": [off, off + n]}
    off += n
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
os.makedirs(out, exist_ok=True)
json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
rng = np.random.default_rng(0)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for name, s in shapes:
        a = np.ones(s, np.float32) if len(s) == 1 else rng.standard_normal(s, dtype=np.float32) * np.float32(0.02)
        f.write((a.view("<u4") >> 16).astype("<u2").tobytes())
print(sum(int(np.prod(s)) for _, s in shapes), "parameters,", off, "bytes of bf16")
