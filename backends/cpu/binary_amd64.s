//go:build amd64 && !purego

#include "textflag.h"

// BINLOOP(OP, l32, l8, l8loop, end) runs d = x OP y over CX floats (a multiple of 8) at
// DI, SI and DX: 32 at a time, then 8 at a time, then jumps to end. The
// other arguments name its labels.
#define BINLOOP(OP, l32, l8, l8loop, end) \
	MOVQ CX, R8;             \
	SHRQ $5, R8;             \
	JZ   l8;                 \
l32:                         \
	VMOVUPS (SI), Y0;        \
	VMOVUPS 32(SI), Y1;      \
	VMOVUPS 64(SI), Y2;      \
	VMOVUPS 96(SI), Y3;      \
	OP      (DX), Y0, Y0;    \
	OP      32(DX), Y1, Y1;  \
	OP      64(DX), Y2, Y2;  \
	OP      96(DX), Y3, Y3;  \
	VMOVUPS Y0, (DI);        \
	VMOVUPS Y1, 32(DI);      \
	VMOVUPS Y2, 64(DI);      \
	VMOVUPS Y3, 96(DI);      \
	ADDQ    $128, SI;        \
	ADDQ    $128, DX;        \
	ADDQ    $128, DI;        \
	DECQ    R8;              \
	JNZ     l32;             \
l8:                          \
	MOVQ CX, R8;             \
	ANDQ $31, R8;            \
	SHRQ $3, R8;             \
	JZ   end;                \
l8loop:                      \
	VMOVUPS (SI), Y0;        \
	OP      (DX), Y0, Y0;    \
	VMOVUPS Y0, (DI);        \
	ADDQ    $32, SI;         \
	ADDQ    $32, DX;         \
	ADDQ    $32, DI;         \
	DECQ    R8;              \
	JNZ     l8loop;          \
	JMP     end

// func binaryKernelAVX2(op int, d, x, y *float32, n int)
//
// d[i] = x[i] op y[i] for i < n, n a multiple of 8; op is 0 add, 1 sub,
// 2 mul, 3 div. Each element gets the one IEEE operation the scalar loop
// does. d may be x or y.
TEXT ·binaryKernelAVX2(SB), NOSPLIT, $0-40
	MOVQ op+0(FP), AX
	MOVQ d+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ y+24(FP), DX
	MOVQ n+32(FP), CX
	CMPQ AX, $1
	JEQ  sub
	CMPQ AX, $2
	JEQ  mul
	CMPQ AX, $3
	JEQ  div
	BINLOOP(VADDPS, add32, add8, add8loop, done)

sub:
	BINLOOP(VSUBPS, sub32, sub8, sub8loop, done)

mul:
	BINLOOP(VMULPS, mul32, mul8, mul8loop, done)

div:
	BINLOOP(VDIVPS, div32, div8, div8loop, done)

done:
	VZEROUPPER
	RET
