#include "trained_length.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

int model_trained_length(const asink_model *m, const char **positions) {
  static const char *const kinds[] = {"rope", "nope", "sinusoidal", "learned", "alibi", "relative"};
  json_t *cfg = json_loads(asink_model_config(m), 0, NULL);
  json_t *len = json_object_get(cfg, "max_position_embeddings");
  if (!len) len = json_object_get(cfg, "n_positions");
  const char *pos = json_string_value(json_object_get(json_object_get(cfg, "attnsink"), "positions"));
  *positions = "rope";
  for (size_t i = 0; pos && i < sizeof kinds / sizeof kinds[0]; i++)
    if (!strcmp(pos, kinds[i])) *positions = kinds[i];
  int n = json_is_integer(len) && json_integer_value(len) > 0 && json_integer_value(len) <= (1 << 30)
              ? (int)json_integer_value(len)
              : 0;
  json_decref(cfg);
  return n;
}

void note_past_trained_length(const asink_model *m, const char *dir, const char *cmd, const char *flag,
                              int tokens) {
  const char *pos;
  int trained = model_trained_length(m, &pos);
  /* learned positions stop there: the library refuses longer windows itself */
  if (trained <= 0 || tokens <= trained || !strcmp(pos, "learned")) return;
  fprintf(stderr,
          "attnsink: note: %s: --%s %d runs model %s past the %d positions it was trained on; its %s "
          "positions there were never trained, so the statistics beyond position %d may not hold\n",
          cmd, flag, tokens, dir, trained, !strcmp(pos, "rope") ? "RoPE" : pos, trained);
}
