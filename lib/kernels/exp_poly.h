/* The constants of the vector exp shared by avx2.c and avx512.c, so both ISAs
 * compute the same function: exp(x) = 2^n * p(r), x = n*ln2 + r, |r| <= ln2/2.
 * ln2 is split so that n*LN2_HI is exact under FMA; p is a minimax fit of exp on
 * that interval with p(0) = p'(0) = 1 (relative error 3.6e-9 with these float
 * coefficients, far below rounding). */
#ifndef ASINK_KERNELS_EXP_POLY_H
#define ASINK_KERNELS_EXP_POLY_H

#define EXP_LOG2E 0x1.715476p+0f
#define EXP_MAGIC 0x1.8p23f /* adding it rounds to an integer held in the low mantissa bits */
#define EXP_LN2_HI 0x1.62e430p-1f
#define EXP_LN2_LO -0x1.05c610p-29f
#define EXP_C2 0x1.fffffcp-2f
#define EXP_C3 0x1.555492p-3f
#define EXP_C4 0x1.5558f2p-5f
#define EXP_C5 0x1.123a20p-7f
#define EXP_C6 0x1.6a23d0p-10f
/* Largest x with a finite expf(x); smallest x whose exp is a normal float. Outside
 * [EXP_LO, EXP_HI] the exponent addition would wrap, so those lanes become 0 below
 * (the kernel contract allows 0 for denormal results) and +inf above. */
#define EXP_HI 0x1.62e42ep+6f
#define EXP_LO -0x1.5d589ep+6f

#endif
