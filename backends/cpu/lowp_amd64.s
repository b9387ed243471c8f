//go:build amd64 && !purego

#include "textflag.h"
#include "dot_amd64.h"

// The kernels of the AVX2 lowDots (lowp_amd64.go): dot products of four
// or eight rows of a BF16 or Q8_0 matrix with a vector, in AVX2, FMA3 and
// F16C. Each keeps one 8-lane float32 accumulator per row and vector,
// reduced at the end as ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)), and sums
// in the order lowDotGo follows:
//
// BF16: eight elements are widened at a time (a shift of 16 bits) and
// lane l takes the products of elements l, l+8, l+16, ... (fused).
//
// Q8_0: the vector comes quantized to 16 bits per block of 32 (lowVec):
// for each block, VPMADDWD multiplies the weights' bytes (widened to 16
// bits) by the vector's integers and adds pairs, exactly, so lane l gets
// the integer sum of the products of elements 2l, 2l+1, 16+2l, 17+2l;
// that sum (below 2^24, so exact as a float) times the weight block's
// scale times the vector block's scale is added to the lane (fused).
//
// Four-row kernels take the rows as four pointers (SI, R8, R9, R10 in the
// loop); eight-row kernels take the first row and the distance between
// rows in bytes (rows at SI + 0, 1, ..., 7 times R8, with 3, 5, 6 and 7
// times it in R9..R12). DX holds out, CX the count of steps left.

// ZERO8 clears the accumulators Y4..Y11.
#define ZERO8 \
	VXORPS Y4, Y4, Y4;    \
	VXORPS Y5, Y5, Y5;    \
	VXORPS Y6, Y6, Y6;    \
	VXORPS Y7, Y7, Y7;    \
	VXORPS Y8, Y8, Y8;    \
	VXORPS Y9, Y9, Y9;    \
	VXORPS Y10, Y10, Y10; \
	VXORPS Y11, Y11, Y11

// ROWS8 computes the row offsets of an eight-row kernel from R8.
#define ROWS8 \
	LEAQ (R8)(R8*2), R9;  \
	LEAQ (R8)(R8*4), R10; \
	LEAQ (R9)(R9*1), R11; \
	LEAQ (R11)(R8*1), R12


// func bf16Dot4x1AVX2(n int, w0, w1, w2, w3 *byte, x0, x1, out *float32)
//
// Four BF16 rows, n elements (a multiple of 8, n >= 8), 1 vector(s) (x1
// is unused with one): out[i*4+r] for the vector xi. AX moves along the
// vectors, BX along the rows.
TEXT ·bf16Dot4x1AVX2(SB), NOSPLIT, $0-64
	MOVQ n+0(FP), CX
	MOVQ w0+8(FP), SI
	MOVQ w1+16(FP), R8
	MOVQ w2+24(FP), R9
	MOVQ w3+32(FP), R10
	MOVQ x0+40(FP), DI
	MOVQ x1+48(FP), R11
	MOVQ out+56(FP), DX
	XORQ AX, AX
	XORQ BX, BX
	ZERO8
	SHRQ $3, CX

bf16Dot4x1AVX2loop:
	VMOVUPS (DI)(AX*1), Y0
	VPMOVZXWD   (SI)(BX*1), Y2
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y0, Y4
	VPMOVZXWD   (R8)(BX*1), Y2
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y0, Y5
	VPMOVZXWD   (R9)(BX*1), Y2
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y0, Y6
	VPMOVZXWD   (R10)(BX*1), Y2
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y0, Y7
	ADDQ $32, AX
	ADDQ $16, BX
	DECQ CX
	JNZ  bf16Dot4x1AVX2loop
	REDUCE4(Y4, Y5, Y6, Y7, X4, 0)
	VZEROUPPER
	RET

// func bf16Dot4x2AVX2(n int, w0, w1, w2, w3 *byte, x0, x1, out *float32)
//
// Four BF16 rows, n elements (a multiple of 8, n >= 8), 2 vector(s) (x1
// is unused with one): out[i*4+r] for the vector xi. AX moves along the
// vectors, BX along the rows.
TEXT ·bf16Dot4x2AVX2(SB), NOSPLIT, $0-64
	MOVQ n+0(FP), CX
	MOVQ w0+8(FP), SI
	MOVQ w1+16(FP), R8
	MOVQ w2+24(FP), R9
	MOVQ w3+32(FP), R10
	MOVQ x0+40(FP), DI
	MOVQ x1+48(FP), R11
	MOVQ out+56(FP), DX
	XORQ AX, AX
	XORQ BX, BX
	ZERO8
	SHRQ $3, CX

bf16Dot4x2AVX2loop:
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS (R11)(AX*1), Y1
	VPMOVZXWD   (SI)(BX*1), Y2
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y0, Y4
	VFMADD231PS Y2, Y1, Y8
	VPMOVZXWD   (R8)(BX*1), Y2
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y0, Y5
	VFMADD231PS Y2, Y1, Y9
	VPMOVZXWD   (R9)(BX*1), Y2
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y0, Y6
	VFMADD231PS Y2, Y1, Y10
	VPMOVZXWD   (R10)(BX*1), Y2
	VPSLLD      $16, Y2, Y2
	VFMADD231PS Y2, Y0, Y7
	VFMADD231PS Y2, Y1, Y11
	ADDQ $32, AX
	ADDQ $16, BX
	DECQ CX
	JNZ  bf16Dot4x2AVX2loop
	REDUCE4(Y4, Y5, Y6, Y7, X4, 0)
	REDUCE4(Y8, Y9, Y10, Y11, X8, 16)
	VZEROUPPER
	RET

// BF16ROW8 adds the 8 elements at off bytes into the rows to the eight
// accumulators, with Y0 the vector's 8 elements.
#define BF16ROW8(off) \
	VPMOVZXWD   off(SI), Y1;        \
	VPSLLD      $16, Y1, Y1;        \
	VFMADD231PS Y1, Y0, Y4;         \
	VPMOVZXWD   off(SI)(R8*1), Y2;  \
	VPSLLD      $16, Y2, Y2;        \
	VFMADD231PS Y2, Y0, Y5;         \
	VPMOVZXWD   off(SI)(R8*2), Y3;  \
	VPSLLD      $16, Y3, Y3;        \
	VFMADD231PS Y3, Y0, Y6;         \
	VPMOVZXWD   off(SI)(R9*1), Y1;  \
	VPSLLD      $16, Y1, Y1;        \
	VFMADD231PS Y1, Y0, Y7;         \
	VPMOVZXWD   off(SI)(R8*4), Y2;  \
	VPSLLD      $16, Y2, Y2;        \
	VFMADD231PS Y2, Y0, Y8;         \
	VPMOVZXWD   off(SI)(R10*1), Y3; \
	VPSLLD      $16, Y3, Y3;        \
	VFMADD231PS Y3, Y0, Y9;         \
	VPMOVZXWD   off(SI)(R11*1), Y1; \
	VPSLLD      $16, Y1, Y1;        \
	VFMADD231PS Y1, Y0, Y10;        \
	VPMOVZXWD   off(SI)(R12*1), Y2; \
	VPSLLD      $16, Y2, Y2;        \
	VFMADD231PS Y2, Y0, Y11

// func bf16Dot8x1AVX2(n int, w *byte, ldw int, x, out *float32)
//
// Eight BF16 rows (ldw bytes apart), n elements (a multiple of 8, n >= 8),
// one vector: out[r]. SI and DI move along row 0 and the vector.
TEXT ·bf16Dot8x1AVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ ldw+16(FP), R8
	MOVQ x+24(FP), DI
	MOVQ out+32(FP), DX
	ROWS8
	ZERO8
	SHRQ $3, CX

	// Four steps (64 bytes of each row) at a time, each time asking for
	// the line PFD bytes ahead in each row.
	CMPQ CX, $4
	JB   bf16Dot8x1AVX2one

bf16Dot8x1AVX2four:
	PREFETCH8(PFD)
	VMOVUPS (DI), Y0
	BF16ROW8(0)
	VMOVUPS 32(DI), Y0
	BF16ROW8(16)
	VMOVUPS 64(DI), Y0
	BF16ROW8(32)
	VMOVUPS 96(DI), Y0
	BF16ROW8(48)
	ADDQ $128, DI
	ADDQ $64, SI
	SUBQ $4, CX
	CMPQ CX, $4
	JAE  bf16Dot8x1AVX2four
	TESTQ CX, CX
	JZ   bf16Dot8x1AVX2done

bf16Dot8x1AVX2one:
	VMOVUPS (DI), Y0
	BF16ROW8(0)
	ADDQ $32, DI
	ADDQ $16, SI
	DECQ CX
	JNZ  bf16Dot8x1AVX2one

bf16Dot8x1AVX2done:
	REDUCE4(Y4, Y5, Y6, Y7, X4, 0)
	REDUCE4(Y8, Y9, Y10, Y11, X8, 16)
	VZEROUPPER
	RET

// func q8Dot4x1AVX2(n int, w0, w1, w2, w3 *byte, xq *int16, xd, out *float32)
//
// Four Q8_0 rows of n blocks (n >= 1), one vector quantized to 16 bits:
// its integers at xq, one scale per block at xd; out[r]. DI and R11 move
// along xq and xd, BX along the rows.
TEXT ·q8Dot4x1AVX2(SB), NOSPLIT, $0-64
	MOVQ n+0(FP), CX
	MOVQ w0+8(FP), SI
	MOVQ w1+16(FP), R8
	MOVQ w2+24(FP), R9
	MOVQ w3+32(FP), R10
	MOVQ xq+40(FP), DI
	MOVQ xd+48(FP), R11
	MOVQ out+56(FP), DX
	XORQ BX, BX
	ZERO8

q8Dot4x1AVX2loop:
	VMOVDQU      (DI), Y12
	VMOVDQU      32(DI), Y13
	VBROADCASTSS (R11), Y14
	VPMOVSXBW   2(SI)(BX*1), Y0
	VPMOVSXBW   18(SI)(BX*1), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (SI)(BX*1), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y4
	VPMOVSXBW   2(R8)(BX*1), Y0
	VPMOVSXBW   18(R8)(BX*1), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (R8)(BX*1), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y5
	VPMOVSXBW   2(R9)(BX*1), Y0
	VPMOVSXBW   18(R9)(BX*1), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (R9)(BX*1), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y6
	VPMOVSXBW   2(R10)(BX*1), Y0
	VPMOVSXBW   18(R10)(BX*1), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (R10)(BX*1), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y7
	ADDQ $64, DI
	ADDQ $4, R11
	ADDQ $34, BX
	DECQ CX
	JNZ  q8Dot4x1AVX2loop
	REDUCE4(Y4, Y5, Y6, Y7, X4, 0)
	VZEROUPPER
	RET

// func q8Dot8x1AVX2(n int, w *byte, ldw int, xq *int16, xd, out *float32)
//
// Eight Q8_0 rows (ldw bytes apart) of n blocks (n >= 1), one vector
// quantized to 16 bits (see q8Dot4x1AVX2); out[r]. SI moves along row 0,
// DI and AX along xq and xd.
TEXT ·q8Dot8x1AVX2(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ ldw+16(FP), R8
	MOVQ xq+24(FP), DI
	MOVQ xd+32(FP), AX
	MOVQ out+40(FP), DX
	ROWS8
	ZERO8

q8Dot8x1AVX2loop:
	PREFETCH8(PFD)
	VMOVDQU      (DI), Y12
	VMOVDQU      32(DI), Y13
	VBROADCASTSS (AX), Y14
	VPMOVSXBW   2(SI), Y0
	VPMOVSXBW   18(SI), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (SI), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y4
	VPMOVSXBW   2(SI)(R8*1), Y0
	VPMOVSXBW   18(SI)(R8*1), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (SI)(R8*1), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y5
	VPMOVSXBW   2(SI)(R8*2), Y0
	VPMOVSXBW   18(SI)(R8*2), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (SI)(R8*2), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y6
	VPMOVSXBW   2(SI)(R9*1), Y0
	VPMOVSXBW   18(SI)(R9*1), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (SI)(R9*1), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y7
	VPMOVSXBW   2(SI)(R8*4), Y0
	VPMOVSXBW   18(SI)(R8*4), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (SI)(R8*4), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y8
	VPMOVSXBW   2(SI)(R10*1), Y0
	VPMOVSXBW   18(SI)(R10*1), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (SI)(R10*1), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y9
	VPMOVSXBW   2(SI)(R11*1), Y0
	VPMOVSXBW   18(SI)(R11*1), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (SI)(R11*1), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y10
	VPMOVSXBW   2(SI)(R12*1), Y0
	VPMOVSXBW   18(SI)(R12*1), Y1
	VPMADDWD    Y12, Y0, Y0
	VPMADDWD    Y13, Y1, Y1
	VPADDD      Y1, Y0, Y0
	VCVTDQ2PS   Y0, Y0
	VPBROADCASTW (SI)(R12*1), X1
	VCVTPH2PS   X1, Y1
	VMULPS      Y14, Y1, Y1
	VFMADD231PS Y1, Y0, Y11
	ADDQ $64, DI
	ADDQ $4, AX
	ADDQ $34, SI
	DECQ CX
	JNZ  q8Dot8x1AVX2loop
	REDUCE4(Y4, Y5, Y6, Y7, X4, 0)
	REDUCE4(Y8, Y9, Y10, Y11, X8, 16)
	VZEROUPPER
	RET

// func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func widenBF16AVX2(dst *float32, src *byte, n int)
//
// dst[i] = the bfloat16 src[i] as float32, for i < n (n a multiple of 16).
TEXT ·widenBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   wbdone

wbloop:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	DECQ      CX
	JNZ       wbloop

wbdone:
	VZEROUPPER
	RET

// func widenQ8AVX2(dst *float32, src *byte, n int)
//
// dst[32b+i] = element i of the Q8_0 block b at src, as float32: its
// scale times its byte, for b < n.
TEXT ·widenQ8AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ   wqdone

wqloop:
	VPBROADCASTW (SI), X4
	VCVTPH2PS    X4, Y4
	VPMOVSXBD    2(SI), Y0
	VPMOVSXBD    10(SI), Y1
	VPMOVSXBD    18(SI), Y2
	VPMOVSXBD    26(SI), Y3
	VCVTDQ2PS    Y0, Y0
	VCVTDQ2PS    Y1, Y1
	VCVTDQ2PS    Y2, Y2
	VCVTDQ2PS    Y3, Y3
	VMULPS       Y4, Y0, Y0
	VMULPS       Y4, Y1, Y1
	VMULPS       Y4, Y2, Y2
	VMULPS       Y4, Y3, Y3
	VMOVUPS      Y0, (DI)
	VMOVUPS      Y1, 32(DI)
	VMOVUPS      Y2, 64(DI)
	VMOVUPS      Y3, 96(DI)
	ADDQ         $34, SI
	ADDQ         $128, DI
	DECQ         CX
	JNZ          wqloop

wqdone:
	VZEROUPPER
	RET

// q16Consts<> holds, from byte 0: the float32 sign-clearing mask, 32767.0
// and 1.0.
DATA q16Consts<>+0(SB)/4, $0x7fffffff
DATA q16Consts<>+4(SB)/4, $32767.0
DATA q16Consts<>+8(SB)/4, $1.0
GLOBL q16Consts<>(SB), RODATA|NOPTR, $12

// func quantizeQ16AVX2(q *int16, d, x *float32, n int)
//
// quantizeQ16 for n blocks of 32 (see lowp.go): d[b] = max|x| / 32767
// over block b, and q[i] = x[i] * (1/d[b]) rounded to the nearest integer,
// ties to even (VCVTPS2DQ), or 0 when d[b] is 0.
TEXT ·quantizeQ16AVX2(SB), NOSPLIT, $0-32
	MOVQ q+0(FP), DI
	MOVQ d+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ n+24(FP), CX
	TESTQ CX, CX
	JZ   qqdone
	VBROADCASTSS q16Consts<>+0(SB), Y15
	VMOVSS       q16Consts<>+4(SB), X14
	VMOVSS       q16Consts<>+8(SB), X13

qqloop:
	VMOVUPS      (SI), Y0
	VMOVUPS      32(SI), Y1
	VMOVUPS      64(SI), Y2
	VMOVUPS      96(SI), Y3
	VANDPS       Y15, Y0, Y4
	VANDPS       Y15, Y1, Y5
	VANDPS       Y15, Y2, Y6
	VANDPS       Y15, Y3, Y7
	VMAXPS       Y5, Y4, Y4
	VMAXPS       Y7, Y6, Y6
	VMAXPS       Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS       X5, X4, X4
	VPERMILPS    $0x4e, X4, X5
	VMAXPS       X5, X4, X4
	VPERMILPS    $0xb1, X4, X5
	VMAXPS       X5, X4, X4
	VDIVSS       X14, X4, X4        // d = amax / 32767
	VMOVSS       X4, (DX)
	VXORPS       X6, X6, X6
	VCMPSS       $4, X6, X4, X7     // d != 0
	VDIVSS       X4, X13, X5        // 1/d (inf when d is 0)
	VANDPS       X7, X5, X5         // 0 when d is 0
	VBROADCASTSS X5, Y5
	VMULPS       Y5, Y0, Y0
	VMULPS       Y5, Y1, Y1
	VMULPS       Y5, Y2, Y2
	VMULPS       Y5, Y3, Y3
	VCVTPS2DQ    Y0, Y0
	VCVTPS2DQ    Y1, Y1
	VCVTPS2DQ    Y2, Y2
	VCVTPS2DQ    Y3, Y3
	VPACKSSDW    Y1, Y0, Y0         // lanes: x0-3 x8-11 x4-7 x12-15
	VPACKSSDW    Y3, Y2, Y2
	VPERMQ       $0xd8, Y0, Y0
	VPERMQ       $0xd8, Y2, Y2
	VMOVDQU      Y0, (DI)
	VMOVDQU      Y2, 32(DI)
	ADDQ         $128, SI
	ADDQ         $64, DI
	ADDQ         $4, DX
	DECQ         CX
	JNZ          qqloop

qqdone:
	VZEROUPPER
	RET
