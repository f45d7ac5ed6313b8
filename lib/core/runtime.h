/* Library-wide runtime: lazy one-time initialisation, thread count, CPU level. */
#ifndef ASINK_CORE_RUNTIME_H
#define ASINK_CORE_RUNTIME_H

#include "attnsink.h"

/* asink_init() under another name for internal entry points: returns its status. */
asink_status asink_runtime_ready(void);

/* CPU feature levels. */
typedef enum { ASINK_ISA_SCALAR = 0, ASINK_ISA_AVX2 = 1, ASINK_ISA_AVX512 = 2 } asink_isa;

/* Highest level this CPU (and OS) supports. */
asink_isa asink_cpu_best_isa(void);

#endif
