#include "core/blas.h"

#include <blis.h>

void asink_sgemm(bool transa, bool transb, int m, int n, int k, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc, int threads) {
  if (m <= 0 || n <= 0) return;
  /* Below about 8 MFLOP a second thread costs more in BLIS's spinning barriers
   * (tens of microseconds, far worse on a loaded machine) than it saves. */
  if (threads > 1 && (double)m * n * k < 4e6) threads = 1;
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  bli_rntm_set_num_threads(threads, &rntm);
  bli_sgemm_ex(transa ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
               transb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &alpha, (float *)A, lda, 1,
               (float *)B, ldb, 1, &beta, C, ldc, 1, NULL, &rntm);
}
