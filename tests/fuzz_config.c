/* libFuzzer target for config.json (asink_config_parse): any text must either parse into a
 * config the validator accepts, whose config.json written back parses to the same config
 * (asink_config_to_json promises it), or fail with ASINK_ERR_FORMAT and a message, without
 * crashing, leaking or undefined behaviour. Build: see docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attnsink.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  asink_config c;
  asink_status s = asink_config_parse(text, "config.json", &c);
  free(text);
  if (s != ASINK_OK) {
    if (s != ASINK_ERR_FORMAT && s != ASINK_ERR_SPEC && s != ASINK_ERR_NOMEM) abort();
    if (!asink_last_error()[0]) abort();
    return 0;
  }
  if (asink_config_validate(&c, "parsed") != ASINK_OK) abort();
  char *again = asink_config_to_json(&c);
  if (!again) return 0;
  asink_config d;
  if (asink_config_parse(again, "written", &d) != ASINK_OK) abort();
  char *twice = asink_config_to_json(&d);
  if (!twice || strcmp(again, twice)) abort();
  free(again);
  free(twice);
  return 0;
}
