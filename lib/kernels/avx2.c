/* Placeholder until the AVX2+FMA table lands: the build has no AVX2 kernels. */
#include "kernels/kernels.h"

const asink_kernels *const asink_kernels_avx2_table = 0;
