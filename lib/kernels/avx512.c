/* Placeholder until the AVX-512 table lands: the build has no AVX-512 kernels. */
#include "kernels/kernels.h"

const asink_kernels *const asink_kernels_avx512_table = 0;
