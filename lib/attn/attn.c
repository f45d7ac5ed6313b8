/* temporary: replaced by the real op in the next commit */
#include "attnsink.h"
#include "core/error.h"
asink_status asink_attn_create(asink_attn **op, const char *spec, int h, int hk, int d) {
  (void)op; (void)spec; (void)h; (void)hk; (void)d;
  return asink_fail(ASINK_ERR_UNSUPPORTED, "not yet");
}
