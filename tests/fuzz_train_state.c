/* libFuzzer target for the attnsink program's train_state.json (read by `attnsink train
 * --resume`): the program's own readers, opts_from_json (the run's settings) and
 * restore_counters (step, generator state, loss sums), which are static in
 * examples/attnsink/train.c, hence the #include. Any file must either be accepted, with
 * settings inside the flags' ranges, or refused with a message, without crashing, leaking
 * or undefined behaviour.
 * Build: see docs/fuzzing.md. */
#include "../examples/attnsink/train.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* main.c's usage text is not linked in (it holds the program's main) */
void cli_usage(cli_cmd cmd, const cli_opts *d) {
  (void)cmd;
  (void)d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t e;
  json_t *st = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e);
  if (!st) return 0;
  run r;
  memset(&r, 0, sizeof r);
  r.o = train_defaults;
  char src[] = "train_state.json", corpus_path[] = "corpus.txt", ckpt[] = "run/step-1";
  r.state_src = src, r.c.path = corpus_path, r.ckpt = ckpt;
  r.o.out = "run";
  cli_opts saved = r.o;
  if (opts_from_json(json_object_get(st, "args"), r.state_src, &saved) == 0) {
    /* what the tampered files carried must never be accepted: the ranges of the flags */
    if (saved.context < 2 || saved.batch < 1 || saved.batch > 65536 || saved.eval_every < 1 ||
        saved.layers < 1)
      abort();
    json_t *again = train_opts_json(&saved); /* what a resumed run writes back */
    json_decref(again);
  }
  restore_counters(&r, st);
  json_decref(st);
  return 0;
}
