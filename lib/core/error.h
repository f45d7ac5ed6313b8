/* Status + thread-local error message: every failure site is one line,
 *   return asink_fail(ASINK_ERR_SPEC, "spec '%s': window=%s must be ...", ...);
 * and names the bad value. */
#ifndef ASINK_CORE_ERROR_H
#define ASINK_CORE_ERROR_H

#include "attnsink.h"

#if defined(__GNUC__)
#define ASINK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ASINK_PRINTF(a, b)
#endif

/* Sets the calling thread's message and returns s. */
asink_status asink_fail(asink_status s, const char *fmt, ...) ASINK_PRINTF(2, 3);

/* Prefixes the current message with "prefix: " (context as an error travels up). */
asink_status asink_fail_context(asink_status s, const char *prefix);

#endif
