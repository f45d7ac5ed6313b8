/*
 * libattnsink — attention sinks in transformer language models, as a C library.
 *
 * One public header. Everything public is prefixed asink_. Handles are opaque and
 * owned by the library; configuration goes through functions and spec strings, so
 * no public struct can change size (ABI stability, as in zstd).
 *
 * Conventions for every function below:
 *  - fallible functions return asink_status: ASINK_OK (0) or a negative error kind;
 *    asink_last_error() then holds a thread-local message naming the bad value;
 *  - buffers passed in belong to the caller: the library reads or writes them during
 *    the call only and never keeps the pointer;
 *  - tensors are row-major float32; activations are (B, T, H, D).
 *  - the library never prints, never aborts and never exits.
 *
 * Threads, per handle (asink_attn, asink_model, asink_cache, asink_sampler, asink_adamw,
 * asink_metric): one thread at a time per handle, and a handle together with the handles it
 * refers to (a model with its optimizer, its attached metric, its caches); separate handles
 * may be used from separate threads at the same time. The library's own threads work
 * inside each call (asink_set_num_threads). The runtime functions (asink_init, versions,
 * asink_status_string, asink_last_error, thread count, asink_runtime_info) may be called
 * from any thread at any time.
 *
 * Who frees what: every handle is freed by its asink_*_free (NULL is a no-op), each exactly
 * once. An optimizer must be freed before its model. A metric and its model may be freed in
 * either order (freeing one detaches it from the other). A cache keeps no pointer into its
 * model and may be freed before or after it. Strings the library returns are static or
 * owned by a handle, except asink_metric_json's and the buffers asink_tokenizer_encode and
 * asink_tokenizer_decode return, which the caller free()s.
 *
 * Stability (docs/abi.md): within major version 1 functions are only added, never changed
 * or removed; what a future release may still change is declared only when the caller
 * defines ASINK_EXPERIMENTAL, and a function on its way out is marked ASINK_DEPRECATED (the
 * compiler warns) for at least one minor release before a new major version removes it.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef ATTNSINK_H
#define ATTNSINK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ASINK_BUILDING_LIBRARY) && defined(__GNUC__)
#define ASINK_API __attribute__((visibility("default")))
#else
#define ASINK_API
#endif

/* Marks a declaration that a later major version will remove; msg says what to use. */
#if defined(__GNUC__) || defined(__clang__)
#define ASINK_DEPRECATED(msg) __attribute__((deprecated(msg)))
#else
#define ASINK_DEPRECATED(msg)
#endif

/* ===================================================================== version */

/* The one place the version is written: meson.build reads these three lines, so the
 * project, the soname (libattnsink.so.MAJOR) and pkg-config follow them. */
#define ASINK_VERSION_MAJOR 1
#define ASINK_VERSION_MINOR 3
#define ASINK_VERSION_PATCH 0
#define ASINK_VERSION_NUMBER \
  (ASINK_VERSION_MAJOR * 10000 + ASINK_VERSION_MINOR * 100 + ASINK_VERSION_PATCH)
#define ASINK_STRINGIFY_(x) #x
#define ASINK_STRINGIFY(x) ASINK_STRINGIFY_(x)
/* "MAJOR.MINOR.PATCH" of this header */
#define ASINK_VERSION_STRING                                                           \
  ASINK_STRINGIFY(ASINK_VERSION_MAJOR) "." ASINK_STRINGIFY(ASINK_VERSION_MINOR) "." \
      ASINK_STRINGIFY(ASINK_VERSION_PATCH)

/* The version of the library actually loaded, "MAJOR.MINOR.PATCH". Static string. */
ASINK_API const char *asink_version(void);
/* The loaded library's version as MAJOR*10000 + MINOR*100 + PATCH. */
ASINK_API int asink_version_number(void);

/* ====================================================================== status */

typedef enum {
  ASINK_OK = 0,
  ASINK_ERR_ARG = -1,         /* a bad argument: NULL pointer, size out of range */
  ASINK_ERR_SPEC = -2,        /* an attention spec that does not parse or is inconsistent */
  ASINK_ERR_SHAPE = -3,       /* shapes that do not fit together */
  ASINK_ERR_NOMEM = -4,       /* an allocation failed */
  ASINK_ERR_STATE = -5,       /* a call out of order (backward before forward, ...) */
  ASINK_ERR_IO = -6,          /* a file could not be read or written */
  ASINK_ERR_FORMAT = -7,      /* a file's content is malformed */
  ASINK_ERR_UNSUPPORTED = -8, /* valid request this build or this CPU cannot serve */
  ASINK_ERR_NONFINITE = -9    /* (1.1) NaN or infinity in a loss or a gradient; the message
                                 names the tensor and nothing was updated */
} asink_status;

/* A short static name for a status ("ok", "bad argument", ...). Never NULL. */
ASINK_API const char *asink_status_string(asink_status s);

/* The message of the last error raised on the calling thread, naming the offending
 * value ("spec 'softmax,window=0': window=0 must be a positive integer").
 * Empty string if none. Valid until the next failing call on the same thread. */
ASINK_API const char *asink_last_error(void);

/* ===================================================================== runtime */

/* Initialises the runtime explicitly: picks the SIMD kernels, GEMM micro-kernel
 * included, from CPUID (or ASINK_SIMD=scalar|avx2|avx512) and the GEMM driver
 * (ASINK_GEMM=auto|packed|blis), and whether bf16 mixed precision uses the CPU's AVX-512
 * BF16 kernel (ASINK_BF16_KERNEL=0|1|auto). Every other entry point does this lazily.
 * Environment variables are read once, here, and never written: the library does not
 * set BLIS_ARCH_TYPE, so a host's own BLIS keeps its settings. A BLIS_ARCH_TYPE the
 * user set is checked, because BLIS aborts on one it cannot run.
 * Returns ASINK_ERR_UNSUPPORTED if ASINK_SIMD names a level this CPU lacks, or
 * BLIS_ARCH_TYPE a kernel set this BLIS or CPU cannot run; ASINK_ERR_ARG if ASINK_SIMD
 * names no level, ASINK_GEMM no driver, ASINK_BF16_KERNEL none of its values or
 * BLIS_ARCH_TYPE no index (the message names
 * the value). Idempotent and thread-safe. */
ASINK_API asink_status asink_init(void);

/* One line describing the runtime: version, SIMD level, GEMM kernel, BLIS's own kernel
 * set and how it was chosen, thread count. Static storage; valid until the next call. */
ASINK_API const char *asink_runtime_info(void);

/* The SIMD level in use: "scalar", "avx2" or "avx512". */
ASINK_API const char *asink_simd_level(void);

/* Threads used by the library's parallel regions (and BLIS calls made outside
 * them). Default: ASINK_NUM_THREADS if set (asink_init fails with ASINK_ERR_ARG
 * naming a value that is not 1..1024), else the online cores.
 * ASINK_ERR_ARG unless 1 <= n <= 1024. */
ASINK_API asink_status asink_set_num_threads(int n);
ASINK_API int asink_get_num_threads(void);

/* ============================================================ attention-op */
/*
 * An attention operation selected by a spec string (docs/attention.md):
 *   base[,key=value...]   base: softmax sigmoid elu linear elu-kernel
 *   options: norm=none|sum|clamp  scale=F  bias=F  causal=0|1  window=W  prefix=P
 *            alibi=0|1  kbias=shared|head  vbias=shared|head  sink=head|zero  alpha=F
 * q is (B,T,H,D); k and v are (B,T,Hkv,D) with H a multiple of Hkv (GQA / MQA);
 * out is (B,T,H,D). The handle keeps per-row statistics of its last forward for
 * backward; it never holds a T x T map.
 */
typedef struct asink_attn asink_attn;

/* Creates an op. Errors: ASINK_ERR_SPEC for an unknown base or option, an option
 * not valid for the base or a bad number (message names the text);
 * ASINK_ERR_SHAPE for heads not a multiple of kv heads or a size <= 0.
 * Learnable parameters start at zero; set them with asink_attn_param(). */
ASINK_API asink_status asink_attn_create(asink_attn **op, const char *spec, int n_head,
                                         int n_kv_head, int head_dim);
/* Frees the op and its workspaces. NULL is a no-op. */
ASINK_API void asink_attn_free(asink_attn *op);

/* The spec in canonical form (every option spelled out). Owned by the op. */
ASINK_API const char *asink_attn_spec(const asink_attn *op);

/* Number of key columns the op's maps have for T tokens: T, or T+1 with kbias
 * (column 0 is then the learnable virtual key). */
ASINK_API int asink_attn_key_count(const asink_attn *op, int T);

/* Learnable parameters: "k_bias" and "v_bias" (n, head_dim) with n = 1 (shared) or
 * n_head (head); "sinks" (n_head). Index i runs over 0 .. count-1 in that order. */
ASINK_API int asink_attn_param_count(const asink_attn *op);
/* Name and shape of parameter i. shape has room for 2 entries; *ndim is 1 or 2. */
ASINK_API asink_status asink_attn_param_info(const asink_attn *op, int i, const char **name,
                                             int *ndim, int64_t shape[2]);
/* Pointer to the op's own storage of a parameter (writing changes it) or of its
 * gradient. *numel receives the element count. ASINK_ERR_ARG for an unknown name. */
ASINK_API asink_status asink_attn_param(asink_attn *op, const char *name, float **data,
                                        size_t *numel);
ASINK_API asink_status asink_attn_grad(asink_attn *op, const char *name, float **data,
                                       size_t *numel);
/* Sets every parameter gradient to zero. backward accumulates into them. */
ASINK_API void asink_attn_zero_grad(asink_attn *op);

/* out = attention(q, k, v). importance, if not NULL, receives (B, H, Tk) with the
 * per-key importance of docs/attention.md computed in the same pass. Saves row statistics
 * for asink_attn_backward. ASINK_ERR_ARG for NULL buffers, ASINK_ERR_SHAPE for
 * B, T < 1. */
ASINK_API asink_status asink_attn_forward(asink_attn *op, int B, int T, const float *q,
                                          const float *k, const float *v, float *out,
                                          float *importance);

/* The same with Tq queries against Tk keys at given positions (a key/value cache, a
 * chunk of a long sequence): q and out are (B, Tq, H, D), k and v (B, Tk, Hkv, D).
 * q_pos (Tq) and k_pos (Tk) are the absolute positions, each strictly increasing and
 * shared by the batch; every mask, ALiBi and relative bias is computed on them
 * (docs/attention.md). k_pos NULL: keys at 0 .. Tk-1; q_pos NULL: queries at
 * Tk-Tq .. Tk-1 (the newest Tq of the keys; Tq <= Tk). importance: (B, H, Tk, +1 with
 * kbias), each key's column divided by the queries at or after its position.
 * ASINK_ERR_ARG for positions that do not increase; ASINK_ERR_SHAPE for a query that
 * sees no key. asink_attn_backward differentiates it like any forward. */
ASINK_API asink_status asink_attn_forward_at(asink_attn *op, int B, int Tq, int Tk,
                                             const int64_t *q_pos, const int64_t *k_pos,
                                             const float *q, const float *k, const float *v,
                                             float *out, float *importance);

/* Gradients of sum(out * dout) for the last forward: writes dq (B, Tq, H, D), dk and dv
 * (B, Tk, Hkv, D) and adds the parameter gradients into the op's grad buffers. B, Tq and
 * Tk are those of that forward (Tq = Tk = T after asink_attn_forward); q, k, v and out
 * must be its buffers, unchanged. ASINK_ERR_STATE if there was no forward, ASINK_ERR_SHAPE
 * naming the sizes if they are not the forward's. */
ASINK_API asink_status asink_attn_backward(asink_attn *op, int B, int Tq, int Tk, const float *q,
                                           const float *k, const float *v, const float *out,
                                           const float *dout, float *dq, float *dk, float *dv);

/* ====================================================================== model */
/*
 * A decoder language model (docs/api.md, docs/formats.md, docs/models.md): family llama,
 * mistral, qwen2, gpt2, gpt_neox (Pythia) or opt, with the study's variants, described by an HF-style config.json text (with an "attnsink" object
 * for attention spec, FFN kind, norm position, positions, sink token, BOS id).
 * Parameters carry their HF names ("model.layers.0.self_attn.q_proj.weight",
 * "h.0.attn.c_attn.weight", ...) and HF layouts (GPT-2 Conv1D weights [in, out]).
 * Tokens are int32 (B, T); logits (B, T, vocab). The model keeps the activations
 * of its last forward for backward; gradients accumulate until zeroed (AdamW's
 * step zeroes them after applying).
 */
typedef struct asink_model asink_model;

/* Creates a model from config.json text, parameters initialised from seed (normal,
 * std sqrt(2/(5 fan_in)); FFN output projection std 1/sqrt(F)/L; k_bias / v_bias
 * std sqrt(2/(5 head_dim)); norms 1; biases, sinks, relative biases 0).
 * ASINK_ERR_FORMAT naming the key for a bad config. */
ASINK_API asink_status asink_model_create(asink_model **m, const char *config_json, uint64_t seed);
/* Loads an HF-style directory: config.json + model.safetensors, or the shards that
 * model.safetensors.index.json lists (F32/F16/BF16, converted to float32 in the model's
 * memory). Missing, extra or misshaped tensors: ASINK_ERR_FORMAT naming the tensor. */
ASINK_API asink_status asink_model_load(asink_model **m, const char *dir);
/* Writes dir/config.json and dir/model.safetensors (F32), each atomically (temp
 * file, fsync, rename); creates dir if needed. A failed save leaves the old files. */
ASINK_API asink_status asink_model_save(const asink_model *m, const char *dir);
ASINK_API void asink_model_free(asink_model *m);

/* The model's config.json text (canonical: every attnsink field). Owned by m. */
ASINK_API const char *asink_model_config(const asink_model *m);
/* Sizes: layers, heads, kv heads, head size, width, vocab; any pointer may be NULL. */
ASINK_API void asink_model_dims(const asink_model *m, int *n_layer, int *n_head, int *n_kv_head,
                                int *head_dim, int *hidden, int *vocab);

/* Parameters, in a fixed order: name and shape (ndim <= 4) of parameter i. */
ASINK_API int asink_model_param_count(const asink_model *m);
ASINK_API asink_status asink_model_param_info(const asink_model *m, int i, const char **name,
                                              int *ndim, int64_t shape[4]);
/* Pointer to the model's storage of a parameter or of its gradient (writing
 * changes it). ASINK_ERR_ARG naming the name if there is no such parameter. */
ASINK_API asink_status asink_model_param(asink_model *m, const char *name, float **data,
                                         size_t *numel);
ASINK_API asink_status asink_model_grad(asink_model *m, const char *name, float **data,
                                        size_t *numel);
ASINK_API void asink_model_zero_grad(asink_model *m);

/* logits (B, T, vocab) for tokens (B, T); logits NULL runs the layers only (for an
 * attached metric). ASINK_ERR_ARG naming a token outside the vocabulary;
 * ASINK_ERR_SHAPE if T exceeds learned positions. */
ASINK_API asink_status asink_model_forward(asink_model *m, int B, int T, const int32_t *tokens,
                                           float *logits);
/* Mean cross-entropy of targets (B, T) (entries < 0 are ignored) after forward;
 * keeps what asink_model_backward needs. ASINK_ERR_NONFINITE if the loss is NaN or
 * infinite (*loss still receives it; nothing is kept for backward). */
ASINK_API asink_status asink_model_loss(asink_model *m, int B, int T, const int32_t *tokens,
                                        const int32_t *targets, float *loss);
/* The same loss, keeping nothing for backward (evaluation). */
ASINK_API asink_status asink_model_eval_loss(asink_model *m, int B, int T, const int32_t *tokens,
                                             const int32_t *targets, float *loss);
/* Adds the gradients of the last asink_model_loss into the gradient buffers.
 * ASINK_ERR_STATE if there was none since the last backward. After any other error the
 * buffers may hold part of this backward: zero them (asink_model_zero_grad) and redo the loss. */
ASINK_API asink_status asink_model_backward(asink_model *m);

/* ================================================ parameter and gradient blocks (1.1) */
/*
 * The model keeps every parameter in one contiguous float block and every gradient in a
 * second block laid out the same way: parameter i of asink_model_param_info occupies
 * elements [offset_i, offset_i + numel_i) of both, row-major in its HF shape, the parameters
 * following each other in index order with no gaps, so offset_0 = 0 and the blocks hold the
 * sum of all numel_i floats. A data-parallel trainer sums (or averages) the gradient block
 * over its workers with one reduction (MPI_Allreduce, torch.distributed, NCCL, ...) between
 * asink_model_backward and asink_adamw_step (docs/api.md "Data-parallel training").
 * Pointers stay valid while the model lives; the blocks are never reallocated.
 * Added in version 1.1 (symbol version ATTNSINK_1.1).
 */

/* The gradient block: *data (writing changes the gradients) and its element count *numel
 * (may be NULL). ASINK_ERR_ARG for NULL m or data. */
ASINK_API asink_status asink_model_grad_block(asink_model *m, float **data, size_t *numel);
/* The parameter block, the same way (writing changes the weights). */
ASINK_API asink_status asink_model_param_block(asink_model *m, float **data, size_t *numel);
/* Where parameter i lies in both blocks: *offset in floats from the start, *numel its
 * element count (either may be NULL). ASINK_ERR_ARG naming i if it is not 0 .. count-1. */
ASINK_API asink_status asink_model_param_offset(const asink_model *m, int i, size_t *offset,
                                                size_t *numel);

/* ================================================================== AdamW */
/*
 * Decoupled weight decay (as torch.optim.AdamW), applied to 2-D ".weight" matrices
 * and embeddings only (not norms, biases, k_bias/v_bias, sinks, sink token);
 * global-norm gradient clipping (clip <= 0: off); learning rate warm-up (linear
 * from lr/warmup) then constant or cosine to min_lr at total_steps.
 */
typedef struct asink_adamw asink_adamw;

ASINK_API asink_status asink_adamw_create(asink_adamw **o, asink_model *m, float lr, float beta1,
                                          float beta2, float eps, float weight_decay, float clip);
ASINK_API void asink_adamw_free(asink_adamw *o);
/* schedule: "constant" or "cosine"; warmup steps >= 0; total_steps used by cosine. */
ASINK_API asink_status asink_adamw_schedule(asink_adamw *o, const char *schedule, int warmup,
                                            int total_steps, float min_lr);
/* One update from the model's accumulated gradients, which it then zeroes.
 * grad_norm (may be NULL) receives the global norm before clipping.
 * ASINK_ERR_NONFINITE if a gradient holds NaN or infinity: the message names the first such
 * parameter and element; the step is skipped (weights, moments and step count unchanged) and
 * the gradients are left as they are for inspection (asink_model_zero_grad to go on). */
ASINK_API asink_status asink_adamw_step(asink_adamw *o, float *grad_norm);
/* Steps taken so far, and the learning rate the next step will use. */
ASINK_API int64_t asink_adamw_steps(const asink_adamw *o);
ASINK_API float asink_adamw_lr(const asink_adamw *o);
/* dir/optimizer.safetensors (moments, step and settings in metadata), atomic. */
ASINK_API asink_status asink_adamw_save(const asink_adamw *o, const char *dir);
ASINK_API asink_status asink_adamw_load(asink_adamw *o, const char *dir);

/* ===================================================================== metric */
/*
 * Sink statistics (docs/attention.md, docs/api.md), accumulated over batches until reset:
 *  - importance alpha per sequence, layer, head and key position (virtual key of a
 *    kbias spec first), and Sink_k^eps: percent of (sequence, layer, head) triples
 *    with alpha_k > eps;
 *  - hidden-state norms per layer 0..L and position, key (after RoPE) and value
 *    norms per layer and position (mean over sequences and kv heads);
 *  - cosine of the first token's key with every query, per layer, head and query
 *    position, and the mean |q| |k_1|; attention entropy per layer and head.
 * Two ways in: attached to a model (gathered inside its forward passes, no second
 * pass), or fed dense maps (N, H, Tq, Tk) of one layer by the caller.
 */
typedef struct asink_metric asink_metric;

/* eps: threshold of the Sink metric, in (0, 1). ASINK_ERR_ARG naming eps otherwise. */
ASINK_API asink_status asink_metric_create(asink_metric **mt, float eps);
ASINK_API void asink_metric_free(asink_metric *mt);
/* Forgets every accumulated sequence (shape and attachment are kept). */
ASINK_API void asink_metric_reset(asink_metric *mt);

/* Attaches mt to m: every asink_model_forward / loss / eval_loss of m then adds its
 * sequences. A model holds at most one metric; NULL detaches. ASINK_ERR_SHAPE if mt
 * already holds statistics of a model with another layer/head count. */
ASINK_API asink_status asink_model_attach_metric(asink_model *m, asink_metric *mt);

/* Supplied maps: adds N sequences of one layer's attention maps (N, H, Tq, Tk)
 * (Tk = Tq, or Tq + 1 with a virtual key in column 0). normalized != 0: the maps are
 * the attention itself (entries must be >= 0); 0: the proxy |A| / (sum |A| + 1e-8)
 * of docs/attention.md is applied per row. layer counts from 0; n_layer fixes the layer count
 * on first use. Sequences are counted when layer n_layer - 1 arrives. */
ASINK_API asink_status asink_metric_add_maps(asink_metric *mt, int layer, int n_layer, int N,
                                             int H, int Tq, int Tk, const float *maps,
                                             int normalized);

/* Shapes of what was gathered: sequences, layers, heads, query positions T and key
 * columns Tk. Any pointer may be NULL. */
ASINK_API void asink_metric_dims(const asink_metric *mt, int *n_seq, int *n_layer, int *n_head,
                                 int *T, int *Tk);
/* Copies out results; each buffer holds the shape given. ASINK_ERR_STATE if nothing
 * was gathered, or (for the model-only statistics) if they came from supplied maps. */
ASINK_API asink_status asink_metric_importance(const asink_metric *mt, float *out); /* (N, L, H, Tk) */
ASINK_API asink_status asink_metric_sink(const asink_metric *mt, float *out);       /* (Tk) percent */
ASINK_API asink_status asink_metric_hidden_norm(const asink_metric *mt, float *out); /* (L+1, T) */
ASINK_API asink_status asink_metric_key_norm(const asink_metric *mt, float *out);    /* (L, T) */
ASINK_API asink_status asink_metric_value_norm(const asink_metric *mt, float *out);  /* (L, T) */
ASINK_API asink_status asink_metric_qk_cosine(const asink_metric *mt, float *out);   /* (L, H, T) */
ASINK_API asink_status asink_metric_qk_norm_product(const asink_metric *mt, float *out); /* (L, H, T) */
ASINK_API asink_status asink_metric_entropy(const asink_metric *mt, float *out);     /* (L, H) */
/* All of it as one JSON object (keys as the Python dict of m.sink_stats); malloc'd,
 * free() it. NULL with ASINK_ERR_STATE / NOMEM in asink_last_error(). */
ASINK_API char *asink_metric_json(const asink_metric *mt);

/* Decoding (asink_model_decode with a cache): one record per decode call while the
 * metric is attached, the share of attention each layer and head put on the cache's
 * sink slots (the kept positions 0 .. n_sink-1 of the stream; for softmax the attention
 * itself, otherwise the proxy-normalised map), averaged over the call's new positions
 * and sequences. Counts and results; asink_metric_reset forgets them too. */
ASINK_API int asink_metric_decode_steps(const asink_metric *mt);
/* (steps, L, H) percent-free shares in [0, 1]. ASINK_ERR_STATE if no step was recorded. */
ASINK_API asink_status asink_metric_sink_share(const asink_metric *mt, float *out);

/* Window-relative sink (model-only, docs/metrics.md): per sequence, layer and head the
 * mean over queries of the share of the first key each query sees (key max(0, t - W + 1)
 * under window=W; key 0 without a window, where it equals the first token's importance),
 * shape (N, L, H); and the percent of those (sequence, layer, head) triples above eps,
 * one float. Since 1.1. */
ASINK_API asink_status asink_metric_window_importance(const asink_metric *mt, float *out);
ASINK_API asink_status asink_metric_window_sink(const asink_metric *mt, float *out);

/* =================================================================== decoding */
/*
 * A key/value cache for incremental decoding of B independent sequences by one model
 * (docs/api.md "Decoding"). Per layer it keeps keys (after RoPE) and values of the
 * positions its policy keeps:
 *   "full"    every position, up to max_len (memory grows as positions arrive);
 *   "window"  the last `window` positions;
 *   "sink"    the first n_sink positions for ever plus the last `window` (StreamingLLM).
 * Inside the cache positions are ranks: the kept positions, oldest first, are numbered
 * 0, 1, ... and masks, ALiBi and relative biases see those numbers, so a window or sink
 * cache stays within the trained range however long the stream. RoPE keys keep their
 * rotation, which preserves every distance within the window; a sink cache re-rotates
 * its sink keys so that their distance to the newest position is their rank distance,
 * as StreamingLLM does. Learned and sinusoidal (absolute) positions cannot be re-assigned
 * once computed, so those models take "full" caches only. A cache holds no pointer to
 * its model's data: free it before or after the model, but use it with that model only.
 * One thread at a time per cache (and per model).
 */
typedef struct asink_cache asink_cache;

/* policy "full" (window, n_sink unused except n_sink for the metric's sink share; 1 <=
 * max_len), "window" (1 <= window; max_len unused), "sink" (1 <= n_sink < window).
 * ASINK_ERR_ARG naming a bad value; ASINK_ERR_UNSUPPORTED for a combination the model
 * cannot decode consistently (window/sink with absolute positions, a prefix-LM prefix
 * longer than the cache, causal=0, a sink cache of a RoPE model with the MLP kernel). */
ASINK_API asink_status asink_cache_create(asink_cache **c, asink_model *m, const char *policy,
                                          int batch, int n_sink, int window, int max_len);
ASINK_API void asink_cache_free(asink_cache *c);
/* Empties every sequence (memory is kept for reuse). */
ASINK_API void asink_cache_reset(asink_cache *c);
/* Tokens per sequence a decode call runs through the layers at once (default 128): a
 * long prefill is cut into chunks so memory stays bounded; the results do not depend on
 * it beyond float rounding. ASINK_ERR_ARG unless 1 <= chunk <= 65536. */
ASINK_API asink_status asink_cache_set_chunk(asink_cache *c, int chunk);
/* Positions fed to sequence b so far, and positions its cache holds now; -1 for a bad b. */
ASINK_API int64_t asink_cache_fed(const asink_cache *c, int b);
ASINK_API int asink_cache_held(const asink_cache *c, int b);
/* Sequences, and the bytes of keys and values allocated now. */
ASINK_API int asink_cache_batch(const asink_cache *c);
ASINK_API size_t asink_cache_bytes(const asink_cache *c);

/* Feeds n tokens (B, n) to every sequence of c; logits (B, n, vocab) of the new
 * positions, or NULL. Errors leave the cache as it was: ASINK_ERR_ARG for a cache of
 * another model or a token outside the vocabulary; ASINK_ERR_SHAPE past a full cache's
 * max_len or a learned model's positions; ASINK_ERR_STATE for a prefix-LM whose first
 * call does not hold the whole prefix (its positions attend to each other). */
ASINK_API asink_status asink_model_decode(asink_model *m, asink_cache *c, int n,
                                          const int32_t *tokens, float *logits);
/* The same with lengths[b] tokens for sequence b (0 .. n_max): tokens (B, n_max), logits
 * (B, n_max, vocab) with the rows past a sequence's length set to 0. */
ASINK_API asink_status asink_model_decode_ragged(asink_model *m, asink_cache *c,
                                                 const int *lengths, int n_max,
                                                 const int32_t *tokens, float *logits);

/* Sampling from logits: temperature 0 is greedy (the lowest id among equal maxima);
 * otherwise softmax(logits / temperature) restricted to the top_k largest (0: all) and
 * then to the smallest set whose probability reaches top_p (1: all), drawn from a
 * xoshiro256** generator seeded with seed: the same seed gives the same tokens. */
typedef struct asink_sampler asink_sampler;
ASINK_API asink_status asink_sampler_create(asink_sampler **s, float temperature, int top_k,
                                            float top_p, uint64_t seed);
ASINK_API void asink_sampler_free(asink_sampler *s);
ASINK_API asink_status asink_sampler_pick(asink_sampler *s, const float *logits, int vocab,
                                          int32_t *token);
/* Generation: feeds prompt (B, T0) into c (reset first), then samples n_new tokens per
 * sequence; out (B, T0 + n_new) is the prompt followed by them. */
ASINK_API asink_status asink_model_generate(asink_model *m, asink_cache *c, asink_sampler *s,
                                            int T0, const int32_t *prompt, int n_new,
                                            int32_t *out);

/* ================================================================= tokenizer */
/*
 * The tokenizers of pretrained checkpoints (docs/tokenizers.md): byte-pair encoding as
 * GPT-2, GPT-NeoX/Pythia, LLaMA 3 and Qwen2 use it (byte level) and as LLaMA 2 and
 * Mistral's tokenizer.json describe it (SentencePiece style: U+2581 for spaces, <0xNN>
 * byte tokens). Read from a checkpoint directory: HF's tokenizer.json, else GPT-2's
 * encoder.json + vocab.bpe; BOS from tokenizer_config.json (bos_token, add_bos_token), the
 * post-processor's template, or config.json (bos_token_id).
 *
 * A tokenizer is only read after loading: any number of threads may encode and decode with
 * one at the same time. Since 1.1.
 */
typedef struct asink_tokenizer asink_tokenizer;

/* Loads the tokenizer files of dir. ASINK_ERR_IO if dir has none (the message says which
 * are looked for) or one cannot be read; ASINK_ERR_FORMAT naming the file and the key,
 * token or merge that is malformed; ASINK_ERR_UNSUPPORTED naming the part of
 * tokenizer.json this library does not implement (a model type other than BPE, a
 * normaliser, pre-tokenizer or decoder it does not know, a Split regex other than GPT-2's,
 * LLaMA 3's or Qwen2's). */
ASINK_API asink_status asink_tokenizer_load(asink_tokenizer **tok, const char *dir);
ASINK_API void asink_tokenizer_free(asink_tokenizer *tok);

/* Encodes text[0, len) (UTF-8; no BOS is added: prepend asink_tokenizer_bos's id if the
 * model wants one). *ids is malloc'd (the caller free()s it), *n ids long. Added tokens
 * of tokenizer.json ("<|endoftext|>", "<s>") found in the text encode as themselves;
 * GPT-2's encoder.json has none. Bytes that are not valid UTF-8 are characters of their
 * own, of no letter, digit or space class: byte-level models encode them as their byte
 * tokens (decoding gives them back), SentencePiece-style ones as <0xNN> tokens or unk. */
ASINK_API asink_status asink_tokenizer_encode(const asink_tokenizer *tok, const char *text, size_t len,
                                              int32_t **ids, size_t *n);
/* The bytes of ids: *text is malloc'd, NUL-terminated, *len bytes before the NUL (which
 * may be cut UTF-8 if ids end inside a character). Added tokens decode to their content.
 * ASINK_ERR_ARG naming an id that is no token. */
ASINK_API asink_status asink_tokenizer_decode(const asink_tokenizer *tok, const int32_t *ids, size_t n,
                                              char **text, size_t *len);
/* Highest id + 1 (added tokens included). */
ASINK_API int asink_tokenizer_vocab_size(const asink_tokenizer *tok);
/* "byte-level" or "metaspace" (SentencePiece style). */
ASINK_API const char *asink_tokenizer_kind(const asink_tokenizer *tok);
/* The BOS id, -1 if the files name none; *adds_bos (may be NULL) is whether the
 * tokenizer's own settings start every encoding for the model with it. */
ASINK_API int32_t asink_tokenizer_bos(const asink_tokenizer *tok, int *adds_bos);
/* The id of a token as the vocabulary or added_tokens spell it, -1 if none. */
ASINK_API int32_t asink_tokenizer_token_id(const asink_tokenizer *tok, const char *token);
/* The vocabulary's spelling of id (owned by tok), NULL if no token has it. */
ASINK_API const char *asink_tokenizer_token(const asink_tokenizer *tok, int32_t id);

/* ============================================================ bf16 weights (1.1) */
/*
 * A model may keep its weight matrices (linear layers, the embedding, the head) in bf16,
 * half the memory of float32, for inference: forward, logits, eval loss, metrics and
 * decoding run on it (each weight widened exactly to float32 as the GEMMs pack or read it;
 * sums and activations stay float32). Norm weights, biases, learned positions and the
 * attention's own parameters stay float32. Training is refused: asink_model_loss,
 * asink_model_backward and asink_adamw_create return ASINK_ERR_UNSUPPORTED, and so do
 * asink_model_param/asink_model_grad for a bf16 parameter. asink_model_save writes the
 * float32 values the bf16 ones stand for.
 *
 * options: "" or NULL for the defaults, else comma-separated key=value pairs:
 *   weights=fp32|bf16   the matrices' storage (default fp32).
 *   precision=fp32|bf16 the GEMMs' operands (default fp32; 1.2, bf16 mixed precision below).
 * An unknown key or value is ASINK_ERR_ARG naming it.
 */
/* asink_model_load with options. With weights=bf16, BF16 tensors are copied as they are
 * (no float32 copy is ever made) and F32/F16/F64 ones rounded to the nearest bf16. */
ASINK_API asink_status asink_model_load_opts(asink_model **m, const char *dir, const char *options);
/* asink_model_create with options (bf16: the seeded values rounded to the nearest bf16). */
ASINK_API asink_status asink_model_create_opts(asink_model **m, const char *config_json,
                                               uint64_t seed, const char *options);
/* "bf16" or "fp32": how m keeps its weight matrices. */
ASINK_API const char *asink_model_weights(const asink_model *m);

/* ===================================================== bf16 mixed precision (1.2) */
/*
 * precision=bf16 in the options string of asink_model_load_opts / asink_model_create_opts
 * (default precision=fp32; combinable with weights=) trains and runs a model in bf16 mixed
 * precision, as PyTorch's CPU autocast to bfloat16 does for nn.Linear:
 *  - Every GEMM of the linear layers (q, k, v, o, the FFN's, fused q/k/v) and of the head,
 *    forward and backward (y = x W^T, dX = dY W, dW = dY^T X, and the head's logits, d(input)
 *    and weight gradient), multiplies its two operands rounded to bf16 (round to nearest
 *    even); each product of two bf16 values is exact in float32, and the sums are float32.
 *    Unlike autocast, the results stay float32 (they are not rounded to bf16).
 *  - In float32: the master weights (the float block AdamW updates; asink_model_param,
 *    asink_model_param_block and checkpoints hold them), every gradient, the optimizer state,
 *    activations, the loss and the softmax statistics, norms, RoPE, activation functions,
 *    the embedding lookup, and the attention core (scores, maps, their backward, the
 *    feature-map MLP of "kernel": "mlp").
 *  - The GEMMs read bf16 copies of the weight matrices (half the bytes). The copies are made
 *    again inside each asink_adamw_step, and at the start of a pass (forward, loss, eval
 *    loss, decode) after a create or load or asink_model_set_param, and at every pass once a
 *    writable pointer to the float weights has been handed out (asink_model_param,
 *    asink_model_param_block): writes through such a pointer are then always seen. Read with
 *    asink_model_param_read and write with asink_model_set_param (1.3) to avoid that cost.
 * Saved checkpoints are float32 (the master weights): precision is a runtime choice, not a
 * file format. With weights=bf16 as well, the bf16 weights are the GEMMs' operands (inference
 * only, as for weights=bf16).
 */
/* "bf16" or "fp32": the precision of m's GEMMs (the precision= option). */
ASINK_API const char *asink_model_precision(const asink_model *m);

/* ======================================== reading and setting parameters (1.3) */
/*
 * asink_model_param hands out a writable pointer, so a precision=bf16 model can never trust
 * its bf16 copies again and remakes them at every pass (a decoding step included). These two
 * calls read and write parameters without that cost.
 */
/* A read-only view of parameter name's float32 values (numel of them, may be NULL) in the
 * model's storage, valid until the model is freed. Handing it out changes nothing: do not
 * write through it (asink_model_set_param writes). ASINK_ERR_ARG naming an unknown name;
 * ASINK_ERR_UNSUPPORTED for a parameter kept in bf16 (weights=bf16). */
ASINK_API asink_status asink_model_param_read(const asink_model *m, const char *name,
                                              const float **data, size_t *numel);
/* Copies numel float32 values into parameter name; numel must be its size (ASINK_ERR_SHAPE
 * naming both otherwise). A parameter kept in bf16 (weights=bf16) receives each value
 * rounded to the nearest bf16 (ties to even). With precision=bf16 the bf16 copies are remade
 * once, at the next pass. ASINK_ERR_ARG naming an unknown name. */
ASINK_API asink_status asink_model_set_param(asink_model *m, const char *name, const float *values,
                                             size_t numel);

/* ================================================================ experimental */
/*
 * Declarations here are not promised: any release may change or remove them, and the
 * ABI test does not cover them. They are visible only to a caller that defines
 * ASINK_EXPERIMENTAL before including this header. None today.
 */
#ifdef ASINK_EXPERIMENTAL
#endif

#ifdef __cplusplus
}
#endif
#endif /* ATTNSINK_H */
