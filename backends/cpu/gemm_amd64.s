//go:build amd64 && !purego

#include "textflag.h"

// Micro-kernels of the packed GEMM (see gemm.go and gemm_amd64.go). Both
// compute the MR x NR tile C = alpha * A B + beta * C from an MR x kc sliver
// of packed A (a[p*MR + r]) and a kc x NR sliver of packed B (b[p*NR + j]):
// each step p loads one row of B into registers, broadcasts the MR values
// of A one at a time and adds their products to the accumulators with
// FMAs, so every element is summed over p in order. C is read only when
// beta != 0 (so NaN there does not leak through beta == 0), and the kernels
// need kc >= 1.

// AVX2 + FMA3, 6 x 16: accumulators Y4..Y15 (row r in Y(4+2r), Y(5+2r)),
// B row in Y0, Y1, broadcasts of A in Y2, Y3.

// STEP6x16(i) does inner step i past SI (A) and DI (B).
#define STEP6x16(i) \
	VMOVUPS      i*64(DI), Y0;        \
	VMOVUPS      i*64+32(DI), Y1;     \
	VBROADCASTSS i*24(SI), Y2;        \
	VFMADD231PS  Y0, Y2, Y4;          \
	VFMADD231PS  Y1, Y2, Y5;          \
	VBROADCASTSS i*24+4(SI), Y3;      \
	VFMADD231PS  Y0, Y3, Y6;          \
	VFMADD231PS  Y1, Y3, Y7;          \
	VBROADCASTSS i*24+8(SI), Y2;      \
	VFMADD231PS  Y0, Y2, Y8;          \
	VFMADD231PS  Y1, Y2, Y9;          \
	VBROADCASTSS i*24+12(SI), Y3;     \
	VFMADD231PS  Y0, Y3, Y10;         \
	VFMADD231PS  Y1, Y3, Y11;         \
	VBROADCASTSS i*24+16(SI), Y2;     \
	VFMADD231PS  Y0, Y2, Y12;         \
	VFMADD231PS  Y1, Y2, Y13;         \
	VBROADCASTSS i*24+20(SI), Y3;     \
	VFMADD231PS  Y0, Y3, Y14;         \
	VFMADD231PS  Y1, Y3, Y15

// STORE16(lo, hi) writes alpha * (lo, hi) (alpha in Y0) to the C row at DX
// and moves DX to the next row (R8 bytes on).
#define STORE16(lo, hi) \
	VMULPS  Y0, lo, lo;  \
	VMULPS  Y0, hi, hi;  \
	VMOVUPS lo, (DX);    \
	VMOVUPS hi, 32(DX);  \
	ADDQ    R8, DX

// STORE16BETA(lo, hi) is STORE16 adding beta (in Y1) times the old row.
#define STORE16BETA(lo, hi) \
	VMULPS      Y0, lo, lo;     \
	VMULPS      Y0, hi, hi;     \
	VFMADD231PS (DX), Y1, lo;   \
	VFMADD231PS 32(DX), Y1, hi; \
	VMOVUPS     lo, (DX);       \
	VMOVUPS     hi, 32(DX);     \
	ADDQ        R8, DX

// func gemmKernel6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)
TEXT ·gemmKernel6x16AVX2(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	// Bring the rows of C towards L1 while the products are summed.
	MOVQ       DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)

	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   avx2tail

avx2loop4:
	STEP6x16(0)
	STEP6x16(1)
	STEP6x16(2)
	STEP6x16(3)
	ADDQ $96, SI
	ADDQ $256, DI
	DECQ BX
	JNZ  avx2loop4

avx2tail:
	ANDQ $3, CX
	JZ   avx2store

avx2loop1:
	STEP6x16(0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  avx2loop1

avx2store:
	VBROADCASTSS alpha+40(FP), Y0
	MOVL         beta+44(FP), AX
	ANDL         $0x7fffffff, AX // beta == 0 or -0: C is not read
	JZ           avx2store0
	VBROADCASTSS beta+44(FP), Y1
	STORE16BETA(Y4, Y5)
	STORE16BETA(Y6, Y7)
	STORE16BETA(Y8, Y9)
	STORE16BETA(Y10, Y11)
	STORE16BETA(Y12, Y13)
	STORE16BETA(Y14, Y15)
	VZEROUPPER
	RET

avx2store0:
	STORE16(Y4, Y5)
	STORE16(Y6, Y7)
	STORE16(Y8, Y9)
	STORE16(Y10, Y11)
	STORE16(Y12, Y13)
	STORE16(Y14, Y15)
	VZEROUPPER
	RET

// AVX-512F, 12 x 32: accumulators Z8..Z31 (row r in Z(8+2r), Z(9+2r)),
// B row in Z0, Z1, broadcasts of A in Z2..Z7 in turn.

// ROW12x32(i, r, t, lo, hi) adds row r of inner step i to lo, hi through
// broadcast register t.
#define ROW12x32(i, r, t, lo, hi) \
	VBROADCASTSS i*48+r*4(SI), t; \
	VFMADD231PS  Z0, t, lo;       \
	VFMADD231PS  Z1, t, hi

// STEP12x32(i) does inner step i past SI (A) and DI (B).
#define STEP12x32(i) \
	VMOVUPS i*128(DI), Z0;                \
	VMOVUPS i*128+64(DI), Z1;             \
	ROW12x32(i, 0, Z2, Z8, Z9);           \
	ROW12x32(i, 1, Z3, Z10, Z11);         \
	ROW12x32(i, 2, Z4, Z12, Z13);         \
	ROW12x32(i, 3, Z5, Z14, Z15);         \
	ROW12x32(i, 4, Z6, Z16, Z17);         \
	ROW12x32(i, 5, Z7, Z18, Z19);         \
	ROW12x32(i, 6, Z2, Z20, Z21);         \
	ROW12x32(i, 7, Z3, Z22, Z23);         \
	ROW12x32(i, 8, Z4, Z24, Z25);         \
	ROW12x32(i, 9, Z5, Z26, Z27);         \
	ROW12x32(i, 10, Z6, Z28, Z29);        \
	ROW12x32(i, 11, Z7, Z30, Z31)

// STORE32(lo, hi) writes alpha * (lo, hi) (alpha in Z0) to the C row at DX
// and moves DX to the next row (R8 bytes on).
#define STORE32(lo, hi) \
	VMULPS  Z0, lo, lo;  \
	VMULPS  Z0, hi, hi;  \
	VMOVUPS lo, (DX);    \
	VMOVUPS hi, 64(DX);  \
	ADDQ    R8, DX

// STORE32BETA(lo, hi) is STORE32 adding beta (in Z1) times the old row.
#define STORE32BETA(lo, hi) \
	VMULPS      Z0, lo, lo;     \
	VMULPS      Z0, hi, hi;     \
	VFMADD231PS (DX), Z1, lo;   \
	VFMADD231PS 64(DX), Z1, hi; \
	VMOVUPS     lo, (DX);       \
	VMOVUPS     hi, 64(DX);     \
	ADDQ        R8, DX

// PREFETCH32 brings the 128 bytes of the C row at R9 towards L1 and moves
// R9 to the next row.
#define PREFETCH32 \
	PREFETCHT0 (R9);    \
	PREFETCHT0 64(R9);  \
	PREFETCHT0 127(R9); \
	ADDQ       R8, R9

// func gemmKernel12x32AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)
TEXT ·gemmKernel12x32AVX512(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	MOVQ DX, R9
	PREFETCH32
	PREFETCH32
	PREFETCH32
	PREFETCH32
	PREFETCH32
	PREFETCH32
	PREFETCH32
	PREFETCH32
	PREFETCH32
	PREFETCH32
	PREFETCH32
	PREFETCH32

	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   avx512tail

avx512loop4:
	STEP12x32(0)
	STEP12x32(1)
	STEP12x32(2)
	STEP12x32(3)
	ADDQ $192, SI
	ADDQ $512, DI
	DECQ BX
	JNZ  avx512loop4

avx512tail:
	ANDQ $3, CX
	JZ   avx512store

avx512loop1:
	STEP12x32(0)
	ADDQ $48, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  avx512loop1

avx512store:
	VBROADCASTSS alpha+40(FP), Z0
	MOVL         beta+44(FP), AX
	ANDL         $0x7fffffff, AX // beta == 0 or -0: C is not read
	JZ           avx512store0
	VBROADCASTSS beta+44(FP), Z1
	STORE32BETA(Z8, Z9)
	STORE32BETA(Z10, Z11)
	STORE32BETA(Z12, Z13)
	STORE32BETA(Z14, Z15)
	STORE32BETA(Z16, Z17)
	STORE32BETA(Z18, Z19)
	STORE32BETA(Z20, Z21)
	STORE32BETA(Z22, Z23)
	STORE32BETA(Z24, Z25)
	STORE32BETA(Z26, Z27)
	STORE32BETA(Z28, Z29)
	STORE32BETA(Z30, Z31)
	VZEROUPPER
	RET

avx512store0:
	STORE32(Z8, Z9)
	STORE32(Z10, Z11)
	STORE32(Z12, Z13)
	STORE32(Z14, Z15)
	STORE32(Z16, Z17)
	STORE32(Z18, Z19)
	STORE32(Z20, Z21)
	STORE32(Z22, Z23)
	STORE32(Z24, Z25)
	STORE32(Z26, Z27)
	STORE32(Z28, Z29)
	STORE32(Z30, Z31)
	VZEROUPPER
	RET

// TRANSPOSE8(ldoff) loads eight floats from each of the eight rows at
// (R12), (R12)(R8*1), ..., (R12)(R11*1) (row x at R12 + x*ld bytes), and
// stores their transpose as eight runs of eight floats, run q at
// ldoff + q*dw bytes from DI (DX = dw, R13 = 3*dw, AX = DI + 4*dw): run q
// holds element q of every row.
#define TRANSPOSE8(ldoff) \
	VMOVUPS     (R12), Y0;             \
	VMOVUPS     (R12)(R8*1), Y1;       \
	VMOVUPS     (R12)(R8*2), Y2;       \
	VMOVUPS     (R12)(R9*1), Y3;       \
	VMOVUPS     (R12)(R8*4), Y4;       \
	VMOVUPS     (R12)(R10*1), Y5;      \
	VMOVUPS     (R12)(R9*2), Y6;       \
	VMOVUPS     (R12)(R11*1), Y7;      \
	VUNPCKLPS   Y1, Y0, Y8;            \
	VUNPCKHPS   Y1, Y0, Y9;            \
	VUNPCKLPS   Y3, Y2, Y10;           \
	VUNPCKHPS   Y3, Y2, Y11;           \
	VUNPCKLPS   Y5, Y4, Y12;           \
	VUNPCKHPS   Y5, Y4, Y13;           \
	VUNPCKLPS   Y7, Y6, Y14;           \
	VUNPCKHPS   Y7, Y6, Y15;           \
	VSHUFPS     $0x44, Y10, Y8, Y0;    \
	VSHUFPS     $0xee, Y10, Y8, Y1;    \
	VSHUFPS     $0x44, Y11, Y9, Y2;    \
	VSHUFPS     $0xee, Y11, Y9, Y3;    \
	VSHUFPS     $0x44, Y14, Y12, Y4;   \
	VSHUFPS     $0xee, Y14, Y12, Y5;   \
	VSHUFPS     $0x44, Y15, Y13, Y6;   \
	VSHUFPS     $0xee, Y15, Y13, Y7;   \
	VPERM2F128  $0x20, Y4, Y0, Y8;     \
	VMOVUPS     Y8, ldoff(DI);         \
	VPERM2F128  $0x20, Y5, Y1, Y8;     \
	VMOVUPS     Y8, ldoff(DI)(DX*1);   \
	VPERM2F128  $0x20, Y6, Y2, Y8;     \
	VMOVUPS     Y8, ldoff(DI)(DX*2);   \
	VPERM2F128  $0x20, Y7, Y3, Y8;     \
	VMOVUPS     Y8, ldoff(DI)(R13*1);  \
	VPERM2F128  $0x31, Y4, Y0, Y8;     \
	VMOVUPS     Y8, ldoff(AX);         \
	VPERM2F128  $0x31, Y5, Y1, Y8;     \
	VMOVUPS     Y8, ldoff(AX)(DX*1);   \
	VPERM2F128  $0x31, Y6, Y2, Y8;     \
	VMOVUPS     Y8, ldoff(AX)(DX*2);   \
	VPERM2F128  $0x31, Y7, Y3, Y8;     \
	VMOVUPS     Y8, ldoff(AX)(R13*1)

// func gemmPackCols16AVX2(d, src *float32, ld, kc, dw int)
//
// d[p*dw + x] = src[x*ld + p] for x < 16 and p < kc, kc a multiple of 8:
// 16 columns of a transposed B into a sliver dw >= 16 columns wide, eight
// steps at a time as two 8x8 transposes.
TEXT ·gemmPackCols16AVX2(SB), NOSPLIT, $0-40
	MOVQ d+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ kc+24(FP), CX
	MOVQ dw+32(FP), DX
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	LEAQ (R8)(R8*4), R10
	LEAQ (R9)(R8*4), R11
	LEAQ (SI)(R8*8), BX
	SHLQ $2, DX
	LEAQ (DX)(DX*2), R13
	SHRQ $3, CX
	JZ   pdone

ploop:
	LEAQ (DI)(DX*4), AX
	MOVQ SI, R12
	TRANSPOSE8(0)
	MOVQ BX, R12
	TRANSPOSE8(32)
	ADDQ $32, SI
	ADDQ $32, BX
	LEAQ (DI)(DX*8), DI
	DECQ CX
	JNZ  ploop
	VZEROUPPER

pdone:
	RET

// func gemmPackCols6AVX2(d, src *float32, ld, kc, dw int)
//
// d[p*dw + x] = src[x*ld + p] for x < 6 and p < kc, kc a multiple of 8: 6
// rows of A into a sliver dw >= 6 rows wide, eight steps at a time. Rows
// 0-3 are transposed as in TRANSPOSE8 (s_q holds steps q and q+4 of the
// four rows); rows 4 and 5 are interleaved into pairs (r4[q], r5[q]), two
// pairs per 128 bits. Step q goes to DI + q*dw (DX = dw, R13 = 3*dw,
// AX = DI + 4*dw).
TEXT ·gemmPackCols6AVX2(SB), NOSPLIT, $0-40
	MOVQ d+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ kc+24(FP), CX
	MOVQ dw+32(FP), DX
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	LEAQ (R8)(R8*4), R10
	SHLQ $2, DX
	LEAQ (DX)(DX*2), R13
	SHRQ $3, CX
	JZ   p6done

p6loop:
	LEAQ         (DI)(DX*4), AX
	VMOVUPS      (SI), Y0
	VMOVUPS      (SI)(R8*1), Y1
	VMOVUPS      (SI)(R8*2), Y2
	VMOVUPS      (SI)(R9*1), Y3
	VMOVUPS      (SI)(R8*4), Y4
	VMOVUPS      (SI)(R10*1), Y5
	VUNPCKLPS    Y1, Y0, Y8
	VUNPCKHPS    Y1, Y0, Y9
	VUNPCKLPS    Y3, Y2, Y10
	VUNPCKHPS    Y3, Y2, Y11
	VUNPCKLPS    Y5, Y4, Y12
	VUNPCKHPS    Y5, Y4, Y13
	VSHUFPS      $0x44, Y10, Y8, Y0
	VSHUFPS      $0xee, Y10, Y8, Y1
	VSHUFPS      $0x44, Y11, Y9, Y2
	VSHUFPS      $0xee, Y11, Y9, Y3
	VMOVUPS      X0, (DI)
	VMOVLPS      X12, 16(DI)
	VMOVUPS      X1, (DI)(DX*1)
	VMOVHPS      X12, 16(DI)(DX*1)
	VMOVUPS      X2, (DI)(DX*2)
	VMOVLPS      X13, 16(DI)(DX*2)
	VMOVUPS      X3, (DI)(R13*1)
	VMOVHPS      X13, 16(DI)(R13*1)
	VEXTRACTF128 $1, Y0, X8
	VEXTRACTF128 $1, Y12, X9
	VMOVUPS      X8, (AX)
	VMOVLPS      X9, 16(AX)
	VEXTRACTF128 $1, Y1, X8
	VMOVUPS      X8, (AX)(DX*1)
	VMOVHPS      X9, 16(AX)(DX*1)
	VEXTRACTF128 $1, Y2, X8
	VEXTRACTF128 $1, Y13, X9
	VMOVUPS      X8, (AX)(DX*2)
	VMOVLPS      X9, 16(AX)(DX*2)
	VEXTRACTF128 $1, Y3, X8
	VMOVUPS      X8, (AX)(R13*1)
	VMOVHPS      X9, 16(AX)(R13*1)
	ADDQ         $32, SI
	LEAQ         (DI)(DX*8), DI
	DECQ         CX
	JNZ          p6loop
	VZEROUPPER

p6done:
	RET

// func gemmPackRowsAVX2(d, src *float32, ld, w, rows int)
//
// d[r*w + x] = src[r*ld + x] for r < rows and x < w, w a multiple of 8
// and at least 8: rows runs of w adjacent values, copied eight at a time.
TEXT ·gemmPackRowsAVX2(SB), NOSPLIT, $0-40
	MOVQ d+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ w+24(FP), R9
	MOVQ rows+32(FP), CX
	SHLQ $2, R8
	SHRQ $3, R9
	TESTQ CX, CX
	JZ    rdone

rrow:
	MOVQ SI, R10
	MOVQ R9, DX

rcol:
	VMOVUPS (R10), Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, R10
	ADDQ    $32, DI
	DECQ    DX
	JNZ     rcol
	ADDQ    R8, SI
	DECQ    CX
	JNZ     rrow
	VZEROUPPER

rdone:
	RET
