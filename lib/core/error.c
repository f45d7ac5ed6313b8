#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

asink_status asink_fail(asink_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return s;
}

asink_status asink_fail_context(asink_status s, const char *prefix) {
  char tmp[sizeof last_error];
  snprintf(tmp, sizeof tmp, "%s: %s", prefix, last_error);
  memcpy(last_error, tmp, sizeof tmp);
  return s;
}

const char *asink_last_error(void) { return last_error; }

const char *asink_status_string(asink_status s) {
  switch (s) {
  case ASINK_OK: return "ok";
  case ASINK_ERR_ARG: return "bad argument";
  case ASINK_ERR_SPEC: return "bad attention spec";
  case ASINK_ERR_SHAPE: return "bad shape";
  case ASINK_ERR_NOMEM: return "out of memory";
  case ASINK_ERR_STATE: return "call out of order";
  case ASINK_ERR_IO: return "input/output error";
  case ASINK_ERR_FORMAT: return "malformed file";
  case ASINK_ERR_UNSUPPORTED: return "unsupported";
  case ASINK_ERR_NONFINITE: return "not a finite number";
  }
  return "unknown status";
}
