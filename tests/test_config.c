#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "model/config.h"

/* The public GPT-2 small config.json (with n_inner: null, as save_pretrained writes it). */
static const char *GPT2_SMALL =
    "{\n"
    "  \"activation_function\": \"gelu_new\",\n"
    "  \"architectures\": [\n"
    "    \"GPT2LMHeadModel\"\n"
    "  ],\n"
    "  \"attn_pdrop\": 0.1,\n"
    "  \"bos_token_id\": 50256,\n"
    "  \"embd_pdrop\": 0.1,\n"
    "  \"eos_token_id\": 50256,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"layer_norm_epsilon\": 1e-05,\n"
    "  \"model_type\": \"gpt2\",\n"
    "  \"n_ctx\": 1024,\n"
    "  \"n_embd\": 768,\n"
    "  \"n_head\": 12,\n"
    "  \"n_inner\": null,\n"
    "  \"n_layer\": 12,\n"
    "  \"n_positions\": 1024,\n"
    "  \"reorder_and_upcast_attn\": false,\n"
    "  \"resid_pdrop\": 0.1,\n"
    "  \"scale_attn_by_inverse_layer_idx\": false,\n"
    "  \"scale_attn_weights\": true,\n"
    "  \"summary_activation\": null,\n"
    "  \"summary_first_dropout\": 0.1,\n"
    "  \"summary_proj_to_labels\": true,\n"
    "  \"summary_type\": \"cls_index\",\n"
    "  \"summary_use_proj\": true,\n"
    "  \"task_specific_params\": {\n"
    "    \"text-generation\": {\n"
    "      \"do_sample\": true,\n"
    "      \"max_length\": 50\n"
    "    }\n"
    "  },\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 50257\n"
    "}\n";

/* TinyLlama-1.1B's config.json. */
static const char *TINYLLAMA =
    "{\n"
    "  \"architectures\": [\n"
    "    \"LlamaForCausalLM\"\n"
    "  ],\n"
    "  \"attention_bias\": false,\n"
    "  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 5632,\n"
    "  \"max_position_embeddings\": 2048,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 22,\n"
    "  \"num_key_value_heads\": 4,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": null,\n"
    "  \"rope_theta\": 10000.0,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.35.0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 32000\n"
    "}\n";

/* Pythia-160m's config.json (GPT-NeoX). */
static const char *PYTHIA =
    "{\"architectures\": [\"GPTNeoXForCausalLM\"], \"bos_token_id\": 0, \"eos_token_id\": 0,"
    " \"hidden_act\": \"gelu\", \"hidden_size\": 768, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 3072, \"layer_norm_eps\": 1e-05, \"max_position_embeddings\": 2048,"
    " \"model_type\": \"gpt_neox\", \"num_attention_heads\": 12, \"num_hidden_layers\": 12,"
    " \"rotary_emb_base\": 10000, \"rotary_pct\": 0.25, \"tie_word_embeddings\": false,"
    " \"torch_dtype\": \"float16\", \"transformers_version\": \"4.24.0\", \"use_cache\": true,"
    " \"use_parallel_residual\": true, \"vocab_size\": 50304}";

/* OPT-125m's config.json. */
static const char *OPT125 =
    "{\"_name_or_path\": \"facebook/opt-125m\", \"activation_dropout\": 0.0,"
    " \"activation_function\": \"relu\", \"architectures\": [\"OPTForCausalLM\"],"
    " \"attention_dropout\": 0.0, \"bos_token_id\": 2, \"do_layer_norm_before\": true,"
    " \"dropout\": 0.1, \"eos_token_id\": 2, \"ffn_dim\": 3072, \"hidden_size\": 768,"
    " \"init_std\": 0.02, \"layerdrop\": 0.0, \"max_position_embeddings\": 2048,"
    " \"model_type\": \"opt\", \"num_attention_heads\": 12, \"num_hidden_layers\": 12,"
    " \"pad_token_id\": 1, \"prefix\": \"</s>\", \"torch_dtype\": \"float16\","
    " \"transformers_version\": \"4.21.0.dev0\", \"use_cache\": true, \"vocab_size\": 50272,"
    " \"word_embed_proj_dim\": 768}";

/* Qwen2-0.5B's config.json. */
static const char *QWEN2 =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 151643, \"eos_token_id\": 151643, \"hidden_act\": \"silu\","
    " \"hidden_size\": 896, \"initializer_range\": 0.02, \"intermediate_size\": 4864,"
    " \"max_position_embeddings\": 131072, \"max_window_layers\": 24, \"model_type\": \"qwen2\","
    " \"num_attention_heads\": 14, \"num_hidden_layers\": 24, \"num_key_value_heads\": 2,"
    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"sliding_window\": 131072,"
    " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"use_cache\": true,"
    " \"use_sliding_window\": false, \"vocab_size\": 151936}";

/* Mistral-7B-v0.1's config.json. */
static const char *MISTRAL =
    "{\"architectures\": [\"MistralForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2,"
    " \"hidden_act\": \"silu\", \"hidden_size\": 4096, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 14336, \"max_position_embeddings\": 32768, \"model_type\": \"mistral\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,"
    " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"sliding_window\": 4096,"
    " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"use_cache\": true,"
    " \"vocab_size\": 32000}";

/* ---- helpers ------------------------------------------------------------------ */

/* base with key set to value (JSON text), or removed when value is NULL; inside the
 * "attnsink" object when in_attnsink (created if absent). Caller frees. */
static char *edit(const char *base, bool in_attnsink, const char *key, const char *value) {
  json_t *root = json_loads(base, 0, NULL);
  ck_assert_ptr_nonnull(root);
  json_t *obj = root;
  if (in_attnsink) {
    obj = json_object_get(root, "attnsink");
    if (!json_is_object(obj)) {
      obj = json_object();
      json_object_set_new(root, "attnsink", obj);
    }
  }
  if (value) {
    json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
    ck_assert_msg(v != NULL, "bad test JSON %s", value);
    json_object_set_new(obj, key, v);
  } else {
    json_object_del(obj, key);
  }
  char *text = json_dumps(root, JSON_INDENT(2));
  json_decref(root);
  return text;
}

static char *set_top(const char *base, const char *key, const char *value) {
  return edit(base, false, key, value);
}
static char *set_as(const char *base, const char *key, const char *value) {
  return edit(base, true, key, value);
}

/* Parsing text fails with ASINK_ERR_FORMAT and the message holds each of the needles. */
static void expect_fail_text(const char *text, const char *a, const char *b, int line) {
  asink_config c;
  asink_status s = asink_config_parse(text, "cfg/config.json", &c);
  ck_assert_msg(s == ASINK_ERR_FORMAT, "line %d: status %d, expected FORMAT (text %s)", line, s, text);
  const char *e = asink_last_error();
  ck_assert_msg(!strncmp(e, "cfg/config.json: ", 17), "line %d: message does not name the source: %s",
                line, e);
  ck_assert_msg(strstr(e, a), "line %d: message lacks '%s': %s", line, a, e);
  if (b) ck_assert_msg(strstr(e, b), "line %d: message lacks '%s': %s", line, b, e);
}
#define expect_fail(text, a, b) expect_fail_text(text, a, b, __LINE__)

/* Frees the edited text after checking it. */
#define expect_fail_edit(edited, a, b)  \
  do {                                  \
    char *t_ = (edited);                \
    expect_fail_text(t_, a, b, __LINE__); \
    free(t_);                           \
  } while (0)

static void parse_ok_text(const char *text, asink_config *c, int line) {
  asink_status s = asink_config_parse(text, "cfg/config.json", c);
  ck_assert_msg(s == ASINK_OK, "line %d: status %d: %s", line, s, asink_last_error());
}
#define parse_ok(text, c) parse_ok_text(text, c, __LINE__)

static uint32_t bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

static void assert_same(const asink_config *a, const asink_config *b) {
  ck_assert_int_eq(a->family, b->family);
  ck_assert_int_eq(a->vocab_size, b->vocab_size);
  ck_assert_int_eq(a->hidden, b->hidden);
  ck_assert_int_eq(a->intermediate, b->intermediate);
  ck_assert_int_eq(a->n_layer, b->n_layer);
  ck_assert_int_eq(a->n_head, b->n_head);
  ck_assert_int_eq(a->n_kv_head, b->n_kv_head);
  ck_assert_int_eq(a->head_dim, b->head_dim);
  ck_assert_int_eq(a->max_pos, b->max_pos);
  ck_assert_uint_eq(bits(a->norm_eps), bits(b->norm_eps));
  ck_assert_uint_eq(bits(a->rope_theta), bits(b->rope_theta));
  ck_assert_int_eq(a->tie_embeddings, b->tie_embeddings);
  ck_assert_str_eq(a->attn, b->attn);
  ck_assert_int_eq(a->ffn, b->ffn);
  ck_assert_int_eq(a->norm, b->norm);
  ck_assert_int_eq(a->pos, b->pos);
  ck_assert_int_eq(a->kernel_mlp, b->kernel_mlp);
  ck_assert_int_eq(a->sink_token, b->sink_token);
  ck_assert_int_eq(a->bos, b->bos);
  ck_assert_int_eq(a->qkv_bias, b->qkv_bias);
  ck_assert_int_eq(a->o_bias, b->o_bias);
  ck_assert_int_eq(a->mlp_bias, b->mlp_bias);
  ck_assert_int_eq(a->parallel_residual, b->parallel_residual);
  ck_assert_int_eq(a->rope_dim, b->rope_dim);
  ck_assert_int_eq(a->pos_offset, b->pos_offset);
}

/* to_json then parse gives c back; returns the text (caller frees). */
static char *round_trip(const asink_config *c) {
  char *text = asink_config_to_json(c);
  ck_assert_ptr_nonnull(text);
  asink_config back;
  asink_status s = asink_config_parse(text, "round-trip", &back);
  ck_assert_msg(s == ASINK_OK, "%s\n%s", asink_last_error(), text);
  assert_same(c, &back);
  return text;
}

static asink_config small_llama(void) {
  return (asink_config){.family = ASINK_FAMILY_LLAMA, .vocab_size = 100, .hidden = 64,
                        .intermediate = 160, .n_layer = 2, .n_head = 4, .n_kv_head = 2,
                        .head_dim = 16, .max_pos = 128, .norm_eps = 1e-6f, .rope_theta = 10000.f,
                        .tie_embeddings = false, .attn = "softmax", .ffn = ASINK_FFN_SWIGLU,
                        .norm = ASINK_NORMPOS_PRE, .pos = ASINK_POS_ROPE, .bos = -1};
}

/* ---- real configs ------------------------------------------------------------- */

START_TEST(gpt2_small_real_config) {
  asink_config c;
  parse_ok(GPT2_SMALL, &c);
  ck_assert_int_eq(c.family, ASINK_FAMILY_GPT2);
  ck_assert_int_eq(c.vocab_size, 50257);
  ck_assert_int_eq(c.hidden, 768);
  ck_assert_int_eq(c.intermediate, 4 * 768);
  ck_assert_int_eq(c.n_layer, 12);
  ck_assert_int_eq(c.n_head, 12);
  ck_assert_int_eq(c.n_kv_head, 12);
  ck_assert_int_eq(c.head_dim, 64);
  ck_assert_int_eq(c.max_pos, 1024);
  ck_assert_uint_eq(bits(c.norm_eps), bits(1e-5f));
  ck_assert(c.tie_embeddings);
  ck_assert_str_eq(c.attn, "softmax");
  ck_assert_int_eq(c.ffn, ASINK_FFN_GELU);
  ck_assert_int_eq(c.norm, ASINK_NORMPOS_PRE);
  ck_assert_int_eq(c.pos, ASINK_POS_LEARNED);
  ck_assert(!c.kernel_mlp);
  ck_assert(!c.sink_token);
  ck_assert_int_eq(c.bos, -1);
}
END_TEST

START_TEST(tinyllama_real_config) {
  asink_config c;
  parse_ok(TINYLLAMA, &c);
  ck_assert_int_eq(c.family, ASINK_FAMILY_LLAMA);
  ck_assert_int_eq(c.vocab_size, 32000);
  ck_assert_int_eq(c.hidden, 2048);
  ck_assert_int_eq(c.intermediate, 5632);
  ck_assert_int_eq(c.n_layer, 22);
  ck_assert_int_eq(c.n_head, 32);
  ck_assert_int_eq(c.n_kv_head, 4);
  ck_assert_int_eq(c.head_dim, 64);
  ck_assert_int_eq(c.max_pos, 2048);
  ck_assert_uint_eq(bits(c.norm_eps), bits(1e-5f));
  ck_assert_uint_eq(bits(c.rope_theta), bits(10000.f));
  ck_assert(!c.tie_embeddings);
  ck_assert_str_eq(c.attn, "softmax");
  ck_assert_int_eq(c.ffn, ASINK_FFN_SWIGLU);
  ck_assert_int_eq(c.pos, ASINK_POS_ROPE);
  ck_assert_int_eq(c.bos, -1);
}
END_TEST

START_TEST(llama_defaults) {
  char *t = set_top(TINYLLAMA, "num_key_value_heads", NULL);
  char *t2 = set_top(t, "rms_norm_eps", NULL);
  char *t3 = set_top(t2, "rope_theta", NULL);
  char *t4 = set_top(t3, "tie_word_embeddings", NULL);
  asink_config c;
  parse_ok(t4, &c);
  ck_assert_int_eq(c.n_kv_head, 32);
  ck_assert_uint_eq(bits(c.norm_eps), bits(1e-6f));
  ck_assert_uint_eq(bits(c.rope_theta), bits(10000.f));
  ck_assert(!c.tie_embeddings);
  free(t), free(t2), free(t3), free(t4);
}
END_TEST

START_TEST(gpt2_defaults_and_aliases) {
  asink_config c;
  /* n_ctx stands in for an absent n_positions; absent n_inner is 4 * n_embd. */
  char *t = set_top(GPT2_SMALL, "n_positions", NULL);
  char *t2 = set_top(t, "n_ctx", "512");
  char *t3 = set_top(t2, "n_inner", NULL);
  char *t4 = set_top(t3, "layer_norm_epsilon", NULL);
  parse_ok(t4, &c);
  ck_assert_int_eq(c.max_pos, 512);
  ck_assert_int_eq(c.intermediate, 3072);
  ck_assert_uint_eq(bits(c.norm_eps), bits(1e-5f));
  free(t), free(t2), free(t3), free(t4);
  /* HF reads n_positions only: a differing n_ctx is ignored. */
  t = set_top(GPT2_SMALL, "n_ctx", "2048");
  parse_ok(t, &c);
  ck_assert_int_eq(c.max_pos, 1024);
  free(t);
  t = set_top(GPT2_SMALL, "n_inner", "1000");
  parse_ok(t, &c);
  ck_assert_int_eq(c.intermediate, 1000);
  free(t);
  /* activation_function picks the plain MLP's non-linearity. */
  t = set_top(GPT2_SMALL, "activation_function", "\"relu\"");
  parse_ok(t, &c);
  ck_assert_int_eq(c.ffn, ASINK_FFN_RELU);
  free(t);
  t = set_top(GPT2_SMALL, "activation_function", "\"gelu_pytorch_tanh\"");
  parse_ok(t, &c);
  ck_assert_int_eq(c.ffn, ASINK_FFN_GELU);
  free(t);
  /* An explicit attnsink.ffn overrides activation_function, whatever it says. */
  t = set_top(GPT2_SMALL, "activation_function", "\"gelu\"");
  t2 = set_as(t, "ffn", "\"swiglu\"");
  parse_ok(t2, &c);
  ck_assert_int_eq(c.ffn, ASINK_FFN_SWIGLU);
  free(t), free(t2);
}
END_TEST

START_TEST(family_inferred_and_mistral_alias) {
  asink_config c;
  char *t = set_top(GPT2_SMALL, "model_type", NULL);
  parse_ok(t, &c);
  ck_assert_int_eq(c.family, ASINK_FAMILY_GPT2);
  free(t);
  t = set_top(TINYLLAMA, "model_type", NULL);
  parse_ok(t, &c);
  ck_assert_int_eq(c.family, ASINK_FAMILY_LLAMA);
  free(t);
  t = set_top(TINYLLAMA, "model_type", "\"mistral\"");
  parse_ok(t, &c);
  ck_assert_int_eq(c.family, ASINK_FAMILY_MISTRAL);
  ck_assert_str_eq(c.attn, "softmax");
  free(t);
  /* Mistral's sliding window becomes the spec's window. */
  t = set_top(TINYLLAMA, "model_type", "\"mistral\"");
  char *t2 = set_top(t, "sliding_window", "1024");
  parse_ok(t2, &c);
  ck_assert_str_eq(c.attn, "softmax,window=1024");
  free(t2);
  t2 = set_top(t, "sliding_window", "null");
  parse_ok(t2, &c);
  ck_assert_str_eq(c.attn, "softmax");
  free(t2);
  /* An explicit spec must agree with it. */
  t2 = set_top(t, "sliding_window", "1024");
  char *t3 = set_as(t2, "attn", "\"sigmoid,window=1024\"");
  parse_ok(t3, &c);
  ck_assert_str_eq(c.attn, "sigmoid,window=1024");
  free(t3);
  t3 = set_as(t2, "attn", "\"softmax,window=512\"");
  expect_fail_edit(t3, "sliding_window=1024", "window=512");
  free(t), free(t2);
}
END_TEST

START_TEST(attnsink_every_option_parsed) {
  char *t = set_as(TINYLLAMA, "attn", "\"linear,norm=sum,kbias=head,vbias=head\"");
  char *t2 = set_as(t, "ffn", "\"reglu\"");
  char *t3 = set_as(t2, "norm_position", "\"post\"");
  char *t4 = set_as(t3, "positions", "\"relative\"");
  char *t5 = set_as(t4, "kernel", "\"mlp\"");
  char *t6 = set_as(t5, "sink_token", "true");
  char *t7 = set_as(t6, "bos", "31999");
  asink_config c;
  parse_ok(t7, &c);
  ck_assert_str_eq(c.attn, "linear,norm=sum,kbias=head,vbias=head");
  ck_assert_int_eq(c.ffn, ASINK_FFN_REGLU);
  ck_assert_int_eq(c.norm, ASINK_NORMPOS_POST);
  ck_assert_int_eq(c.pos, ASINK_POS_RELATIVE);
  ck_assert(c.kernel_mlp);
  ck_assert(c.sink_token);
  ck_assert_int_eq(c.bos, 31999);
  free(t), free(t2), free(t3), free(t4), free(t5), free(t6), free(t7);
  /* Null and -1 both mean "no BOS"; null kernel means none; alibi positions need no alibi=1. */
  t = set_as(TINYLLAMA, "bos", "-1");
  t2 = set_as(t, "kernel", "null");
  t3 = set_as(t2, "positions", "\"alibi\"");
  parse_ok(t3, &c);
  ck_assert_int_eq(c.bos, -1);
  ck_assert(!c.kernel_mlp);
  ck_assert_int_eq(c.pos, ASINK_POS_ALIBI);
  ck_assert_str_eq(c.attn, "softmax");
  free(t), free(t2), free(t3);
  /* An odd head_dim is fine without rope. */
  t = set_top(TINYLLAMA, "hidden_size", "96");
  t2 = set_top(t, "num_attention_heads", "32");
  t3 = set_as(t2, "positions", "\"learned\"");
  parse_ok(t3, &c);
  ck_assert_int_eq(c.head_dim, 3);
  free(t), free(t2), free(t3);
}
END_TEST

/* ---- round trips -------------------------------------------------------------- */

START_TEST(round_trip_real_configs) {
  asink_config c;
  parse_ok(GPT2_SMALL, &c);
  char *text = round_trip(&c);
  ck_assert_ptr_nonnull(strstr(text, "\"model_type\": \"gpt2\""));
  ck_assert_ptr_nonnull(strstr(text, "\"GPT2LMHeadModel\""));
  ck_assert_ptr_nonnull(strstr(text, "\"activation_function\": \"gelu_new\""));
  ck_assert_ptr_nonnull(strstr(text, "\"layer_norm_epsilon\": 1e-5,"));
  ck_assert_ptr_nonnull(strstr(text, "\"n_positions\": 1024"));
  ck_assert_ptr_nonnull(strstr(text, "\"attnsink\""));
  ck_assert_ptr_nonnull(strstr(text, "\"positions\": \"learned\""));
  ck_assert_int_eq(text[strlen(text) - 1], '\n');
  free(text);
  parse_ok(TINYLLAMA, &c);
  text = round_trip(&c);
  ck_assert_ptr_nonnull(strstr(text, "\"model_type\": \"llama\""));
  ck_assert_ptr_nonnull(strstr(text, "\"LlamaForCausalLM\""));
  ck_assert_ptr_nonnull(strstr(text, "\"rms_norm_eps\": 1e-5,"));
  ck_assert_ptr_nonnull(strstr(text, "\"rope_theta\": 10000.0"));
  ck_assert_ptr_nonnull(strstr(text, "\"num_key_value_heads\": 4"));
  ck_assert_ptr_nonnull(strstr(text, "\"torch_dtype\": \"float32\""));
  ck_assert_ptr_nonnull(strstr(text, "\"tie_word_embeddings\": false"));
  free(text);
}
END_TEST

START_TEST(round_trip_every_option) {
  for (int fam = 0; fam < 2; fam++) {
    asink_config c = small_llama();
    if (fam) {
      c.family = ASINK_FAMILY_GPT2;
      c.n_kv_head = c.n_head;
    }
    c.attn[0] = 0;
    strcpy(c.attn, "linear,norm=clamp,scale=0.3,bias=-1.5,kbias=shared,vbias=head,alibi=1,window=7");
    c.ffn = ASINK_FFN_GEGLU;
    c.norm = ASINK_NORMPOS_POST;
    c.pos = ASINK_POS_SINUSOIDAL;
    c.kernel_mlp = true;
    c.sink_token = true;
    c.bos = 0;
    c.tie_embeddings = !fam;
    c.norm_eps = 3.3e-7f;
    c.rope_theta = 500000.f;
    ck_assert_int_eq(asink_config_validate(&c, "code"), ASINK_OK);
    free(round_trip(&c));
    /* every enum value of each field */
    for (int f = 0; f < 6; f++) {
      c.ffn = (asink_ffn)f;
      free(round_trip(&c));
    }
    for (int p = 0; p < 6; p++) {
      c.pos = (asink_pos)p;
      free(round_trip(&c));
    }
    c.kernel_mlp = false;
    c.sink_token = false;
    c.bos = -1;
    c.norm = ASINK_NORMPOS_PRE;
    strcpy(c.attn, "softmax,sink=head,alpha=2");
    free(round_trip(&c));
  }
}
END_TEST

START_TEST(floats_round_trip_exactly) {
  asink_config c = small_llama();
  float fixed[] = {1e-5f, 1e-6f, 1e-12f, 3.14159274f, 1e-45f /* smallest denormal */, 0.1f,
                   1e4f, 5e5f, 1e6f, 3.4028235e38f, 1.17549435e-38f};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
    c.norm_eps = fixed[i];
    c.rope_theta = fixed[i];
    free(round_trip(&c));
  }
  /* A sweep of bit patterns across every exponent. */
  uint32_t x = 12345;
  for (int i = 0; i < 3000; i++) {
    x = x * 1664525u + 1013904223u;
    uint32_t b = x & 0x7fffffffu;
    float f;
    memcpy(&f, &b, sizeof f);
    if (!(f > 0.f) || f > 3.4e38f) continue;
    c.norm_eps = f;
    c.rope_theta = f;
    free(round_trip(&c));
  }
}
END_TEST

START_TEST(written_floats_are_short) {
  asink_config c = small_llama();
  c.norm_eps = 1e-6f;
  c.rope_theta = 500000.f;
  char *text = asink_config_to_json(&c);
  ck_assert_ptr_nonnull(strstr(text, "\"rms_norm_eps\": 1e-6,"));
  ck_assert_ptr_nonnull(strstr(text, "\"rope_theta\": 500000.0"));
  free(text);
}
END_TEST

/* ---- failures, one per rule --------------------------------------------------- */

START_TEST(invalid_json_and_shape) {
  expect_fail("{\"n_embd\": 768,", "invalid JSON", NULL);
  expect_fail("{\"model_type\": \"gpt2\", \"model_type\": \"llama\"}", "invalid JSON", "duplicate");
  expect_fail("[1, 2]", "not a JSON object", NULL);
  asink_config c;
  ck_assert_int_eq(asink_config_parse(NULL, "x", &c), ASINK_ERR_ARG);
  ck_assert_int_eq(asink_config_parse("{}", "x", NULL), ASINK_ERR_ARG);
}
END_TEST

START_TEST(family_errors) {
  expect_fail_edit(set_top(TINYLLAMA, "model_type", "\"bert\""), "model_type=\"bert\"", "not supported");
  expect_fail_edit(set_top(TINYLLAMA, "model_type", "7"), "model_type=7", NULL);
  expect_fail("{\"vocab_size\": 10}", "model_type", "neither n_embd nor hidden_size");
  char *t = set_top(TINYLLAMA, "model_type", NULL);
  expect_fail_edit(set_top(t, "n_embd", "2048"), "model_type", "both n_embd and hidden_size");
  free(t);
}
END_TEST

START_TEST(missing_required_keys) {
  const char *llama[] = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                         "max_position_embeddings", "vocab_size"};
  for (size_t i = 0; i < sizeof llama / sizeof *llama; i++) {
    expect_fail_edit(set_top(TINYLLAMA, llama[i], NULL), llama[i], "missing");
    expect_fail_edit(set_top(TINYLLAMA, llama[i], "null"), llama[i], "missing");
  }
  const char *gpt2[] = {"n_embd", "n_layer", "n_head", "vocab_size"};
  for (size_t i = 0; i < sizeof gpt2 / sizeof *gpt2; i++)
    expect_fail_edit(set_top(GPT2_SMALL, gpt2[i], NULL), gpt2[i], "missing");
  char *t = set_top(GPT2_SMALL, "n_positions", NULL);
  expect_fail_edit(set_top(t, "n_ctx", NULL), "n_positions", "missing");
  free(t);
}
END_TEST

START_TEST(wrong_types_and_values) {
  expect_fail_edit(set_top(TINYLLAMA, "num_attention_heads", "\"32\""), "num_attention_heads=\"32\"",
                   "integer");
  expect_fail_edit(set_top(TINYLLAMA, "hidden_size", "2048.5"), "hidden_size=2048.5", "integer");
  expect_fail_edit(set_top(TINYLLAMA, "num_attention_heads", "0"), "num_attention_heads=0", "positive");
  expect_fail_edit(set_top(TINYLLAMA, "num_hidden_layers", "-3"), "num_hidden_layers=-3", "positive");
  expect_fail_edit(set_top(TINYLLAMA, "intermediate_size", "true"), "intermediate_size=true", NULL);
  expect_fail_edit(set_top(TINYLLAMA, "max_position_embeddings", "1e12"), "max_position_embeddings", NULL);
  expect_fail_edit(set_top(TINYLLAMA, "num_key_value_heads", "0"), "num_key_value_heads=0", NULL);
  expect_fail_edit(set_top(GPT2_SMALL, "n_embd", "[768]"), "n_embd=[768]", "integer");
  expect_fail_edit(set_top(GPT2_SMALL, "n_inner", "-1"), "n_inner=-1", NULL);
  expect_fail_edit(set_top(GPT2_SMALL, "n_positions", "0"), "n_positions=0", NULL);
  expect_fail_edit(set_top(TINYLLAMA, "tie_word_embeddings", "\"yes\""), "tie_word_embeddings=\"yes\"",
                   NULL);
  expect_fail_edit(set_top(TINYLLAMA, "rope_theta", "\"1e4\""), "rope_theta=\"1e4\"", "number");
  expect_fail_edit(set_top(TINYLLAMA, "rope_theta", "0"), "rope_theta=0", "positive");
  /* An integral real is an integer. */
  asink_config c;
  char *t = set_top(TINYLLAMA, "hidden_size", "2048.0");
  parse_ok(t, &c);
  ck_assert_int_eq(c.hidden, 2048);
  free(t);
}
END_TEST

START_TEST(vocab_below_one) {
  expect_fail_edit(set_top(TINYLLAMA, "vocab_size", "0"), "vocab_size=0", NULL);
  expect_fail_edit(set_top(GPT2_SMALL, "vocab_size", "-5"), "vocab_size=-5", NULL);
}
END_TEST

START_TEST(eps_not_positive) {
  expect_fail_edit(set_top(TINYLLAMA, "rms_norm_eps", "0"), "rms_norm_eps=0", "positive");
  expect_fail_edit(set_top(GPT2_SMALL, "layer_norm_epsilon", "-1e-05"), "layer_norm_epsilon=-1", "positive");
  /* Positive as a double, zero as a float. */
  expect_fail_edit(set_top(TINYLLAMA, "rms_norm_eps", "1e-50"), "rms_norm_eps=1e-50", "float32");
}
END_TEST

START_TEST(head_arithmetic) {
  expect_fail_edit(set_top(TINYLLAMA, "num_attention_heads", "30"), "hidden_size=2048",
                   "num_attention_heads=30");
  expect_fail_edit(set_top(GPT2_SMALL, "n_head", "10"), "n_embd=768", "n_head=10");
  expect_fail_edit(set_top(TINYLLAMA, "num_key_value_heads", "5"), "num_attention_heads=32",
                   "num_key_value_heads=5");
  expect_fail_edit(set_top(TINYLLAMA, "num_key_value_heads", "64"), "num_key_value_heads=64", NULL);
  expect_fail_edit(set_top(TINYLLAMA, "head_dim", "128"), "head_dim=128", NULL);
  asink_config c;
  char *t = set_top(TINYLLAMA, "head_dim", "64");
  parse_ok(t, &c);
  free(t);
  /* rotate-half needs an even head_dim: 96 / 32 = 3. */
  char *t1 = set_top(TINYLLAMA, "hidden_size", "96");
  expect_fail_edit(set_top(t1, "num_attention_heads", "32"), "head_dim=3", "rope");
  free(t1);
  t1 = set_top(GPT2_SMALL, "n_embd", "36");
  t = set_as(t1, "positions", "\"rope\"");
  expect_fail_edit(set_top(t, "n_head", "12"), "head_dim=3", "rope");
  free(t1), free(t);
}
END_TEST

START_TEST(unsupported_hf_features) {
  expect_fail_edit(set_top(TINYLLAMA, "rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}"),
                   "rope_scaling", "not supported");
  expect_fail_edit(set_top(TINYLLAMA, "attention_bias", "1"), "attention_bias=1", "true or false");
  expect_fail_edit(set_top(TINYLLAMA, "hidden_act", "\"gelu\""), "hidden_act=\"gelu\"", NULL);
  expect_fail_edit(set_top(GPT2_SMALL, "activation_function", "\"quick_gelu\""),
                   "activation_function=\"quick_gelu\"", NULL);
  expect_fail_edit(set_top(GPT2_SMALL, "scale_attn_weights", "false"), "scale_attn_weights=false", NULL);
  expect_fail_edit(set_top(GPT2_SMALL, "scale_attn_by_inverse_layer_idx", "true"),
                   "scale_attn_by_inverse_layer_idx=true", NULL);
  /* attnsink.ffn decides, so hidden_act is no longer consulted. */
  asink_config c;
  char *t = set_top(TINYLLAMA, "hidden_act", "\"gelu\"");
  char *t2 = set_as(t, "ffn", "\"geglu\"");
  parse_ok(t2, &c);
  ck_assert_int_eq(c.ffn, ASINK_FFN_GEGLU);
  free(t), free(t2);
}
END_TEST

START_TEST(attnsink_errors) {
  expect_fail_edit(set_top(TINYLLAMA, "attnsink", "[]"), "attnsink=[]", "object");
  expect_fail_edit(set_as(TINYLLAMA, "atn", "\"softmax\""), "attnsink.atn", "not a known key");
  expect_fail_edit(set_as(TINYLLAMA, "attn", "\"softmax,window=0\""), "attnsink.attn", "window=0");
  expect_fail_edit(set_as(TINYLLAMA, "attn", "\"cosine\""), "attnsink.attn", "cosine");
  expect_fail_edit(set_as(TINYLLAMA, "attn", "3"), "attnsink.attn=3", "string");
  char long_spec[400];
  strcpy(long_spec, "\"softmax");
  while (strlen(long_spec) < 320) strcat(long_spec, ",causal=1");
  strcat(long_spec, "\"");
  expect_fail_edit(set_as(TINYLLAMA, "attn", long_spec), "attnsink.attn", "longer than 255");
  expect_fail_edit(set_as(TINYLLAMA, "ffn", "\"swiglo\""), "attnsink.ffn=\"swiglo\"", "swiglu");
  expect_fail_edit(set_as(TINYLLAMA, "norm_position", "\"middle\""), "attnsink.norm_position=\"middle\"",
                   "pre post");
  expect_fail_edit(set_as(TINYLLAMA, "positions", "\"rotary\""), "attnsink.positions=\"rotary\"", NULL);
  expect_fail_edit(set_as(TINYLLAMA, "kernel", "\"rbf\""), "attnsink.kernel=\"rbf\"", "mlp");
  expect_fail_edit(set_as(TINYLLAMA, "kernel", "\"mlp\""), "attnsink.kernel", "linear");
  expect_fail_edit(set_as(TINYLLAMA, "sink_token", "1"), "attnsink.sink_token=1", NULL);
  expect_fail_edit(set_as(TINYLLAMA, "bos", "32000"), "attnsink.bos=32000", NULL);
  expect_fail_edit(set_as(TINYLLAMA, "bos", "-2"), "attnsink.bos=-2", NULL);
  expect_fail_edit(set_as(TINYLLAMA, "bos", "\"1\""), "attnsink.bos=\"1\"", "integer");
}
END_TEST

/* ---- validate on structs built in code ---------------------------------------- */

static void expect_invalid_at(const asink_config *c, const char *a, int line) {
  asink_status s = asink_config_validate(c, "code");
  ck_assert_msg(s == ASINK_ERR_FORMAT, "line %d: status %d", line, s);
  ck_assert_msg(strstr(asink_last_error(), a), "line %d: message lacks '%s': %s", line, a,
                asink_last_error());
  ck_assert_msg(!strncmp(asink_last_error(), "code: ", 6), "line %d: %s", line, asink_last_error());
}
#define expect_invalid(c, a) expect_invalid_at(c, a, __LINE__)

START_TEST(validate_code_built) {
  asink_config good = small_llama(), c;
  ck_assert_int_eq(asink_config_validate(&good, "code"), ASINK_OK);
  ck_assert_int_eq(asink_config_validate(NULL, "code"), ASINK_ERR_ARG);
  c = good, c.family = (asink_family)7, expect_invalid(&c, "family=7");
  c = good, c.vocab_size = 0, expect_invalid(&c, "vocab_size=0");
  c = good, c.hidden = -1, expect_invalid(&c, "hidden_size=-1");
  c = good, c.intermediate = 0, expect_invalid(&c, "intermediate_size=0");
  c = good, c.n_layer = 0, expect_invalid(&c, "num_hidden_layers=0");
  c = good, c.n_head = 0, expect_invalid(&c, "num_attention_heads=0");
  c = good, c.n_kv_head = 0, expect_invalid(&c, "num_key_value_heads=0");
  c = good, c.max_pos = 0, expect_invalid(&c, "max_position_embeddings=0");
  c = good, c.n_head = 5, expect_invalid(&c, "hidden_size=64 is not divisible by num_attention_heads=5");
  c = good, c.head_dim = 32, expect_invalid(&c, "head_dim=32");
  c = good, c.n_kv_head = 3, expect_invalid(&c, "num_key_value_heads=3");
  c = good, c.norm_eps = 0.f, expect_invalid(&c, "rms_norm_eps=0");
  c = good, c.rope_theta = -1.f, expect_invalid(&c, "rope_theta=-1");
  c = good, c.ffn = (asink_ffn)9, expect_invalid(&c, "attnsink.ffn=9");
  c = good, c.norm = (asink_normpos)2, expect_invalid(&c, "attnsink.norm_position=2");
  c = good, c.pos = (asink_pos)-1, expect_invalid(&c, "attnsink.positions=-1");
  c = good, strcpy(c.attn, "softmax,norm=sum"), expect_invalid(&c, "attnsink.attn");
  c = good, memset(c.attn, 'x', sizeof c.attn), expect_invalid(&c, "attnsink.attn");
  c = good, c.kernel_mlp = true, expect_invalid(&c, "attnsink.kernel");
  c = good, c.bos = 100, expect_invalid(&c, "attnsink.bos=100");
  c = good, c.bos = -2, expect_invalid(&c, "attnsink.bos=-2");
  c = good, c.hidden = 40, c.n_head = 8, c.n_kv_head = 8, c.head_dim = 5, expect_invalid(&c, "head_dim=5");
  c.pos = ASINK_POS_NOPE;
  ck_assert_int_eq(asink_config_validate(&c, "code"), ASINK_OK);
  c = good, c.family = ASINK_FAMILY_GPT2, c.n_kv_head = 2, expect_invalid(&c, "n_kv_head=2");
  c = good, c.family = ASINK_FAMILY_GPT2, c.n_kv_head = 4, c.norm_eps = 0.f,
  expect_invalid(&c, "layer_norm_epsilon=0");
  c = good, c.family = ASINK_FAMILY_GPT2, c.n_kv_head = 4, c.hidden = 66,
  expect_invalid(&c, "n_embd=66 is not divisible by n_head=4");
}
END_TEST

START_TEST(names) {
  const char *ffn[] = {"swiglu", "geglu", "reglu", "gelu", "relu", "swish"};
  const char *pos[] = {"rope", "nope", "sinusoidal", "learned", "alibi", "relative"};
  for (int i = 0; i < 6; i++) {
    ck_assert_str_eq(asink_ffn_name((asink_ffn)i), ffn[i]);
    ck_assert_str_eq(asink_pos_name((asink_pos)i), pos[i]);
  }
  ck_assert_str_eq(asink_ffn_name(ASINK_FFN_GELU_EXACT), "gelu_exact");
  ck_assert_str_eq(asink_ffn_name((asink_ffn)7), "unknown");
  ck_assert_str_eq(asink_family_name(ASINK_FAMILY_NEOX), "gpt_neox");
  ck_assert_str_eq(asink_family_name((asink_family)6), "unknown");
  ck_assert_str_eq(asink_pos_name((asink_pos)-1), "unknown");
}
END_TEST

/* The families beyond llama and gpt2, from their published config.json files: what each
 * key becomes, the round trip through the writer, and the refusals naming the key. */
START_TEST(families_from_hf_configs) {
  asink_config c;
  parse_ok(PYTHIA, &c);
  ck_assert_int_eq(c.family, ASINK_FAMILY_NEOX);
  ck_assert_int_eq(c.rope_dim, 16);
  ck_assert_int_eq(c.head_dim, 64);
  ck_assert(c.parallel_residual && c.qkv_bias && c.o_bias && c.mlp_bias && !c.tie_embeddings);
  ck_assert_int_eq(c.ffn, ASINK_FFN_GELU_EXACT);
  ck_assert_int_eq(c.pos, ASINK_POS_ROPE);
  ck_assert_int_eq(c.n_kv_head, 12);
  ck_assert_int_eq(c.intermediate, 3072);
  free(round_trip(&c));

  parse_ok(OPT125, &c);
  ck_assert_int_eq(c.family, ASINK_FAMILY_OPT);
  ck_assert_int_eq(c.pos, ASINK_POS_LEARNED);
  ck_assert_int_eq(c.pos_offset, 2);
  ck_assert_int_eq(c.ffn, ASINK_FFN_RELU);
  ck_assert_int_eq(c.norm, ASINK_NORMPOS_PRE);
  ck_assert(c.tie_embeddings && c.qkv_bias && c.o_bias && c.mlp_bias);
  ck_assert_uint_eq(bits(c.norm_eps), bits(1e-5f));
  free(round_trip(&c));
  char *t = set_top(OPT125, "do_layer_norm_before", "false");
  parse_ok(t, &c);
  ck_assert_int_eq(c.norm, ASINK_NORMPOS_POST);
  free(round_trip(&c));
  free(t);

  parse_ok(QWEN2, &c);
  ck_assert_int_eq(c.family, ASINK_FAMILY_QWEN2);
  ck_assert(c.qkv_bias && !c.o_bias && !c.mlp_bias && c.tie_embeddings);
  ck_assert_str_eq(c.attn, "softmax"); /* sliding_window is off unless use_sliding_window */
  ck_assert_int_eq(c.n_kv_head, 2);
  free(round_trip(&c));

  parse_ok(MISTRAL, &c);
  ck_assert_int_eq(c.family, ASINK_FAMILY_MISTRAL);
  ck_assert_str_eq(c.attn, "softmax,window=4096");
  char *text = round_trip(&c);
  ck_assert_ptr_nonnull(strstr(text, "\"sliding_window\": 4096"));
  ck_assert_ptr_nonnull(strstr(text, "\"MistralForCausalLM\""));
  free(text);

  /* llama's attention_bias / mlp_bias are biases now, written back */
  t = set_top(TINYLLAMA, "attention_bias", "true");
  char *t2 = set_top(t, "mlp_bias", "true");
  parse_ok(t2, &c);
  ck_assert(c.qkv_bias && c.o_bias && c.mlp_bias);
  free(round_trip(&c));
  free(t), free(t2);

  /* a rotary fraction the writer must spell so that int(head_dim * pct) gives it back */
  t = set_top(PYTHIA, "rotary_pct", "1.0");
  parse_ok(t, &c);
  free(t);
  for (int r = 2; r <= 64; r += 2) {
    c.rope_dim = r;
    free(round_trip(&c));
  }
}
END_TEST

START_TEST(families_refused_keys) {
  expect_fail_edit(set_top(PYTHIA, "rotary_pct", "0.3"), "rotary_pct=0.3", "even");
  expect_fail_edit(set_top(PYTHIA, "rotary_pct", "0"), "rotary_pct=0", "(0, 1]");
  expect_fail_edit(set_top(PYTHIA, "rope_scaling", "{\"type\": \"linear\"}"), "rope_scaling", NULL);
  expect_fail_edit(set_top(PYTHIA, "hidden_act", "\"quick_gelu\""), "hidden_act=\"quick_gelu\"", NULL);
  expect_fail_edit(set_top(QWEN2, "use_sliding_window", "true"), "use_sliding_window=true", NULL);
  expect_fail_edit(set_top(OPT125, "_remove_final_layer_norm", "true"), "_remove_final_layer_norm", NULL);
  expect_fail_edit(set_top(OPT125, "layer_norm_elementwise_affine", "false"),
                   "layer_norm_elementwise_affine", NULL);
  expect_fail_edit(set_top(OPT125, "ffn_dim", NULL), "ffn_dim is missing", NULL);
  expect_fail_edit(set_top(OPT125, "model_type", "\"falcon\""), "model_type=\"falcon\"", "gpt_neox");
  /* opt-350m projects a 512-wide embedding: not supported, named */
  char *t = set_top(OPT125, "word_embed_proj_dim", "512");
  asink_config c;
  ck_assert_int_eq(asink_config_parse(t, "cfg/config.json", &c), ASINK_ERR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "word_embed_proj_dim=512"));
  free(t);
  /* configs built in code */
  parse_ok(PYTHIA, &c);
  c.rope_dim = 3;
  ck_assert_int_eq(asink_config_validate(&c, "code"), ASINK_ERR_FORMAT);
  c.rope_dim = 80;
  ck_assert_int_eq(asink_config_validate(&c, "code"), ASINK_ERR_FORMAT);
  parse_ok(OPT125, &c);
  c.n_kv_head = 4;
  ck_assert_int_eq(asink_config_validate(&c, "code"), ASINK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(asink_last_error(), "for opt"));
}
END_TEST

Suite *config_suite(void) {
  Suite *s = suite_create("config");
  TCase *tc = tcase_create("parse");
  tcase_add_test(tc, gpt2_small_real_config);
  tcase_add_test(tc, tinyllama_real_config);
  tcase_add_test(tc, llama_defaults);
  tcase_add_test(tc, gpt2_defaults_and_aliases);
  tcase_add_test(tc, family_inferred_and_mistral_alias);
  tcase_add_test(tc, families_from_hf_configs);
  tcase_add_test(tc, families_refused_keys);
  tcase_add_test(tc, attnsink_every_option_parsed);
  suite_add_tcase(s, tc);
  tc = tcase_create("round_trip");
  tcase_add_test(tc, round_trip_real_configs);
  tcase_add_test(tc, round_trip_every_option);
  tcase_add_test(tc, floats_round_trip_exactly);
  tcase_add_test(tc, written_floats_are_short);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, invalid_json_and_shape);
  tcase_add_test(tc, family_errors);
  tcase_add_test(tc, missing_required_keys);
  tcase_add_test(tc, wrong_types_and_values);
  tcase_add_test(tc, vocab_below_one);
  tcase_add_test(tc, eps_not_positive);
  tcase_add_test(tc, head_arithmetic);
  tcase_add_test(tc, unsupported_hf_features);
  tcase_add_test(tc, attnsink_errors);
  tcase_add_test(tc, validate_code_built);
  tcase_add_test(tc, names);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(config_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
