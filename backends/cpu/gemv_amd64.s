//go:build amd64 && !purego

#include "textflag.h"
#include "dot_amd64.h"

// Dot-product kernels of gemv (see gemv.go and gemv_amd64.go) in AVX2 and
// FMA3. Each computes the dot products of four or eight matrix rows with
// one to three vectors of k >= 1 floats, sharing each load of a vector
// among the rows and each load of a row among the vectors. Decoding is
// bound by the memory bandwidth: the rows are read as parallel sequential
// streams, which the hardware prefetcher follows (software prefetching
// measured slower on the development machine's Zen 3).
//
// Every dot product has one 8-lane accumulator that takes, in order, the
// products of elements [8j, 8j+8) for j = 0, 1, ..., then those of the last
// k mod 8 elements read with a mask (masked-off lanes are neither read nor
// added), and is reduced as ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)). The
// result therefore depends only on the row and the vector, never on which
// kernel computed it or what was computed beside it.

// gemvMask<> is eight all-ones lanes then eight zero lanes: the eight lanes
// at byte 32 - 4n have the first n lanes set.
DATA gemvMask<>+0(SB)/8, $-1
DATA gemvMask<>+8(SB)/8, $-1
DATA gemvMask<>+16(SB)/8, $-1
DATA gemvMask<>+24(SB)/8, $-1
DATA gemvMask<>+32(SB)/8, $0
DATA gemvMask<>+40(SB)/8, $0
DATA gemvMask<>+48(SB)/8, $0
DATA gemvMask<>+56(SB)/8, $0
GLOBL gemvMask<>(SB), RODATA|NOPTR, $64

// LOOPS runs STEP(off), which adds the products of the eight elements at
// byte off past the current position, over the whole blocks of eight of
// the k elements (k in CX): four blocks at a time in the main loop, then
// the zero to three left one at a time. ADV(n) moves the current position
// n bytes on. LOOPS defines the labels main, one, next and mask, and uses
// R13.
#define LOOPS(STEP, ADV, main, one, next, mask) \
	MOVQ CX, R13;  \
	SHRQ $5, R13;  \
	JZ   one;      \
main:              \
	STEP(0);       \
	STEP(32);      \
	STEP(64);      \
	STEP(96);      \
	ADV(128);      \
	DECQ R13;      \
	JNZ  main;     \
one:               \
	MOVQ CX, R13;  \
	ANDQ $24, R13; \
	JZ   mask;     \
	SHRQ $3, R13;  \
next:              \
	STEP(0);       \
	ADV(32);       \
	DECQ R13;      \
	JNZ  next;     \
mask:

// MASK puts in Y1 the mask of the last k mod 8 elements, using R13 and
// BX, and jumps to done when there are none.
#define MASK(done) \
	MOVQ    CX, R13;                \
	ANDQ    $7, R13;                \
	JZ      done;                   \
	SHLQ    $2, R13;                \
	LEAQ    gemvMask<>+32(SB), BX;  \
	SUBQ    R13, BX;                \
	VMOVDQU (BX), Y1

// MASKFMA(src, acc) adds the products of src, read with the mask in Y1,
// and the masked vector elements in Y0 to acc, through Y2.
#define MASKFMA(src, acc) \
	VMASKMOVPS  src, Y1, Y2; \
	VFMADD231PS Y2, Y0, acc

// ZERO4(a0, a1, a2, a3) clears four accumulators.
#define ZERO4(a0, a1, a2, a3) \
	VXORPS a0, a0, a0; \
	VXORPS a1, a1, a1; \
	VXORPS a2, a2, a2; \
	VXORPS a3, a3, a3

// Four rows, one to three vectors: out[i*4 + r] is the dot product of row
// wr with vector i (at x + i*ldx floats). SI, R8, R9, R10 hold the rows,
// DI, R11, R12 the vectors, AX the byte offset reached in all of them, DX
// out, CX k. The accumulator of vector i and row r is Y(4+4i+r); Y0..Y3
// hold loaded values.

// ARGS4 loads the arguments of a four-row kernel (R11 and R12 point past
// the vectors there are when fewer than three, and are not read then).
#define ARGS4 \
	MOVQ k+0(FP), CX;       \
	MOVQ w0+8(FP), SI;      \
	MOVQ w1+16(FP), R8;     \
	MOVQ w2+24(FP), R9;     \
	MOVQ w3+32(FP), R10;    \
	MOVQ x+40(FP), DI;      \
	MOVQ ldx+48(FP), BX;    \
	SHLQ $2, BX;            \
	LEAQ (DI)(BX*1), R11;   \
	LEAQ (R11)(BX*1), R12;  \
	MOVQ out+56(FP), DX;    \
	XORQ AX, AX

// ADVAX(n) moves the offset of the four-row kernels.
#define ADVAX(n) ADDQ $n, AX

// MASKED4(xb, a0, a1, a2, a3) adds the masked products of the vector at
// xb and the four rows to a0..a3.
#define MASKED4(xb, a0, a1, a2, a3) \
	VMASKMOVPS (xb)(AX*1), Y1, Y0; \
	MASKFMA((SI)(AX*1), a0);       \
	MASKFMA((R8)(AX*1), a1);       \
	MASKFMA((R9)(AX*1), a2);       \
	MASKFMA((R10)(AX*1), a3)

// STEP4x1(off): one vector (Y0) against four rows, read by the FMAs.
#define STEP4x1(off) \
	VMOVUPS     off(DI)(AX*1), Y0;     \
	VFMADD231PS off(SI)(AX*1), Y0, Y4; \
	VFMADD231PS off(R8)(AX*1), Y0, Y5; \
	VFMADD231PS off(R9)(AX*1), Y0, Y6; \
	VFMADD231PS off(R10)(AX*1), Y0, Y7

// func gemvDot4x1AVX2(k int, w0, w1, w2, w3, x *float32, ldx int, out *float32)
TEXT ·gemvDot4x1AVX2(SB), NOSPLIT, $0-64
	ARGS4
	ZERO4(Y4, Y5, Y6, Y7)
	LOOPS(STEP4x1, ADVAX, x1main, x1one, x1next, x1mask)
	MASK(x1done)
	MASKED4(DI, Y4, Y5, Y6, Y7)

x1done:
	REDUCE4(Y4, Y5, Y6, Y7, X4, 0)
	VZEROUPPER
	RET

// STEP4x2(off): two vectors (Y0, Y1) against four rows loaded in turn
// into Y2, Y3.
#define STEP4x2(off) \
	VMOVUPS     off(DI)(AX*1), Y0;  \
	VMOVUPS     off(R11)(AX*1), Y1; \
	VMOVUPS     off(SI)(AX*1), Y2;  \
	VFMADD231PS Y2, Y0, Y4;         \
	VFMADD231PS Y2, Y1, Y8;         \
	VMOVUPS     off(R8)(AX*1), Y3;  \
	VFMADD231PS Y3, Y0, Y5;         \
	VFMADD231PS Y3, Y1, Y9;         \
	VMOVUPS     off(R9)(AX*1), Y2;  \
	VFMADD231PS Y2, Y0, Y6;         \
	VFMADD231PS Y2, Y1, Y10;        \
	VMOVUPS     off(R10)(AX*1), Y3; \
	VFMADD231PS Y3, Y0, Y7;         \
	VFMADD231PS Y3, Y1, Y11

// func gemvDot4x2AVX2(k int, w0, w1, w2, w3, x *float32, ldx int, out *float32)
TEXT ·gemvDot4x2AVX2(SB), NOSPLIT, $0-64
	ARGS4
	ZERO4(Y4, Y5, Y6, Y7)
	ZERO4(Y8, Y9, Y10, Y11)
	LOOPS(STEP4x2, ADVAX, x2main, x2one, x2next, x2mask)
	MASK(x2done)
	MASKED4(DI, Y4, Y5, Y6, Y7)
	MASKED4(R11, Y8, Y9, Y10, Y11)

x2done:
	REDUCE4(Y4, Y5, Y6, Y7, X4, 0)
	REDUCE4(Y8, Y9, Y10, Y11, X8, 16)
	VZEROUPPER
	RET

// STEP4x3(off): three vectors (Y0, Y1, Y2) against four rows loaded in
// turn into Y3.
#define STEP4x3(off) \
	VMOVUPS     off(DI)(AX*1), Y0;  \
	VMOVUPS     off(R11)(AX*1), Y1; \
	VMOVUPS     off(R12)(AX*1), Y2; \
	VMOVUPS     off(SI)(AX*1), Y3;  \
	VFMADD231PS Y3, Y0, Y4;         \
	VFMADD231PS Y3, Y1, Y8;         \
	VFMADD231PS Y3, Y2, Y12;        \
	VMOVUPS     off(R8)(AX*1), Y3;  \
	VFMADD231PS Y3, Y0, Y5;         \
	VFMADD231PS Y3, Y1, Y9;         \
	VFMADD231PS Y3, Y2, Y13;        \
	VMOVUPS     off(R9)(AX*1), Y3;  \
	VFMADD231PS Y3, Y0, Y6;         \
	VFMADD231PS Y3, Y1, Y10;        \
	VFMADD231PS Y3, Y2, Y14;        \
	VMOVUPS     off(R10)(AX*1), Y3; \
	VFMADD231PS Y3, Y0, Y7;         \
	VFMADD231PS Y3, Y1, Y11;        \
	VFMADD231PS Y3, Y2, Y15

// func gemvDot4x3AVX2(k int, w0, w1, w2, w3, x *float32, ldx int, out *float32)
TEXT ·gemvDot4x3AVX2(SB), NOSPLIT, $0-64
	ARGS4
	ZERO4(Y4, Y5, Y6, Y7)
	ZERO4(Y8, Y9, Y10, Y11)
	ZERO4(Y12, Y13, Y14, Y15)
	LOOPS(STEP4x3, ADVAX, x3main, x3one, x3next, x3mask)
	MASK(x3done)
	MASKED4(DI, Y4, Y5, Y6, Y7)
	MASKED4(R11, Y8, Y9, Y10, Y11)
	MASKED4(R12, Y12, Y13, Y14, Y15)

x3done:
	REDUCE4(Y4, Y5, Y6, Y7, X4, 0)
	REDUCE4(Y8, Y9, Y10, Y11, X8, 16)
	REDUCE4(Y12, Y13, Y14, Y15, X12, 32)
	VZEROUPPER
	RET

// Eight rows, one vector: out[r] is the dot product of the row at
// w + r*ldw floats with the vector at x. SI and DI move along row 0 and
// the vector; row r starts r*ldw floats past SI, with ldw, 3 ldw, 5 ldw,
// 6 ldw and 7 ldw, in bytes, in R8..R12. The accumulator of row r is
// Y(4+r). Eight streams keep more of the memory's bandwidth busy than
// four.

// STEP8x1(off): the vector (Y0) against eight rows, read by the FMAs.
#define STEP8x1(off) \
	VMOVUPS     off(DI), Y0;             \
	VFMADD231PS off(SI), Y0, Y4;         \
	VFMADD231PS off(SI)(R8*1), Y0, Y5;   \
	VFMADD231PS off(SI)(R8*2), Y0, Y6;   \
	VFMADD231PS off(SI)(R9*1), Y0, Y7;   \
	VFMADD231PS off(SI)(R8*4), Y0, Y8;   \
	VFMADD231PS off(SI)(R10*1), Y0, Y9;  \
	VFMADD231PS off(SI)(R11*1), Y0, Y10; \
	VFMADD231PS off(SI)(R12*1), Y0, Y11

// ADVSIDI(n) moves the row and vector pointers of the eight-row kernel,
// first asking for the two lines PFD bytes ahead in each row (the steps
// between two ADVSIDI read at most 128 bytes of a row).
#define ADVSIDI(n) PREFETCH8(PFD); PREFETCH8(PFD+64); ADDQ $n, SI; ADDQ $n, DI

// func gemvDot8x1AVX2(k int, w *float32, ldw int, x, out *float32)
TEXT ·gemvDot8x1AVX2(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), CX
	MOVQ w+8(FP), SI
	MOVQ ldw+16(FP), R8
	SHLQ $2, R8
	MOVQ x+24(FP), DI
	MOVQ out+32(FP), DX
	LEAQ (R8)(R8*2), R9
	LEAQ (R8)(R8*4), R10
	LEAQ (R9)(R9*1), R11
	LEAQ (R11)(R8*1), R12
	ZERO4(Y4, Y5, Y6, Y7)
	ZERO4(Y8, Y9, Y10, Y11)
	LOOPS(STEP8x1, ADVSIDI, e1main, e1one, e1next, e1mask)
	MASK(e1done)
	VMASKMOVPS (DI), Y1, Y0
	MASKFMA((SI), Y4)
	MASKFMA((SI)(R8*1), Y5)
	MASKFMA((SI)(R8*2), Y6)
	MASKFMA((SI)(R9*1), Y7)
	MASKFMA((SI)(R8*4), Y8)
	MASKFMA((SI)(R10*1), Y9)
	MASKFMA((SI)(R11*1), Y10)
	MASKFMA((SI)(R12*1), Y11)

e1done:
	REDUCE4(Y4, Y5, Y6, Y7, X4, 0)
	REDUCE4(Y8, Y9, Y10, Y11, X8, 16)
	VZEROUPPER
	RET
