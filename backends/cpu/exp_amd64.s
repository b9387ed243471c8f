//go:build amd64 && !purego

#include "textflag.h"

// The exponential of exp.go in AVX2 and FMA3, 8 floats per step; the steps
// and constants are those of exp32, with fused multiply-adds.

// expConsts holds, as float32 bits: expLo, expHi, expLog2E, expShift,
// expLn2Hi, expLn2Lo, expC6, expC5, expC4, expC3, expC2 and 1.
DATA expConsts<>+0(SB)/4, $0xc2d00000  // -104
DATA expConsts<>+4(SB)/4, $0x42b20000  // 89
DATA expConsts<>+8(SB)/4, $0x3fb8aa3b  // log2 e
DATA expConsts<>+12(SB)/4, $0x4b400000 // 1.5*2^23
DATA expConsts<>+16(SB)/4, $0x3f317200 // ln2 high part
DATA expConsts<>+20(SB)/4, $0x35bfbe8e // ln2 low part
DATA expConsts<>+24(SB)/4, $0x3ab5118c // c6
DATA expConsts<>+28(SB)/4, $0x3c091d47 // c5
DATA expConsts<>+32(SB)/4, $0x3d2aac7b // c4
DATA expConsts<>+36(SB)/4, $0x3e2aaa48 // c3
DATA expConsts<>+40(SB)/4, $0x3efffffe // c2
DATA expConsts<>+44(SB)/4, $0x3f800000 // 1
GLOBL expConsts<>(SB), RODATA|NOPTR, $48

// EXPCONSTS loads the constants into Y4..Y15, in the order of expConsts.
#define EXPCONSTS \
	LEAQ         expConsts<>(SB), AX; \
	VBROADCASTSS 0(AX), Y4;           \
	VBROADCASTSS 4(AX), Y5;           \
	VBROADCASTSS 8(AX), Y6;           \
	VBROADCASTSS 12(AX), Y7;          \
	VBROADCASTSS 16(AX), Y8;          \
	VBROADCASTSS 20(AX), Y9;          \
	VBROADCASTSS 24(AX), Y10;         \
	VBROADCASTSS 28(AX), Y11;         \
	VBROADCASTSS 32(AX), Y12;         \
	VBROADCASTSS 36(AX), Y13;         \
	VBROADCASTSS 40(AX), Y14;         \
	VBROADCASTSS 44(AX), Y15

// EXP8 sets Y3 = e^Y0, using Y0..Y2 and the constants in Y4..Y15:
//   - clamp x (x the second source of VMAXPS and VMINPS, so that NaN passes
//     through);
//   - t = x log2e + shift in Y1, kf = t - shift in Y2, r = x - kf ln2 in Y0;
//   - e^r = 1 + (r + r^2 q(r)) in Y3, with r^2 in Y2;
//   - k = bits(t) - bits(shift) in Y1, k1 = k>>1 in Y2 and k2 = k - k1 in
//     Y1, made into 2^k1 and 2^k2 with the bits k<<23 + bits(1) (Y15);
//   - Y3 = e^r 2^k1 2^k2.
#define EXP8 \
	VMAXPS Y0, Y4, Y0;       \
	VMINPS Y0, Y5, Y0;       \
	VMOVAPS      Y7, Y1;     \
	VFMADD231PS  Y6, Y0, Y1; \
	VSUBPS       Y7, Y1, Y2; \
	VFNMADD231PS Y8, Y2, Y0; \
	VFNMADD231PS Y9, Y2, Y0; \
	VMULPS      Y0, Y0, Y2;  \
	VMOVAPS     Y10, Y3;     \
	VFMADD213PS Y11, Y0, Y3; \
	VFMADD213PS Y12, Y0, Y3; \
	VFMADD213PS Y13, Y0, Y3; \
	VFMADD213PS Y14, Y0, Y3; \
	VFMADD213PS Y0, Y2, Y3;  \
	VADDPS      Y15, Y3, Y3; \
	VPSUBD Y7, Y1, Y1;       \
	VPSRAD $1, Y1, Y2;       \
	VPSUBD Y2, Y1, Y1;       \
	VPSLLD $23, Y2, Y2;      \
	VPADDD Y15, Y2, Y2;      \
	VPSLLD $23, Y1, Y1;      \
	VPADDD Y15, Y1, Y1;      \
	VMULPS Y2, Y3, Y3;       \
	VMULPS Y1, Y3, Y3

// func expKernelAVX2(d, x *float32, n int, sign uint32)
//
// d[i] = e^x'[i] for i < n, n a multiple of 8, where x' has the bits of x
// ORed with sign (in Y1, which EXP8 then reuses): 0 for e^x, 1<<31 for
// e^-|x|.
TEXT ·expKernelAVX2(SB), NOSPLIT, $0-28
	MOVQ d+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   done
	EXPCONSTS

loop:
	VBROADCASTSS sign+24(FP), Y1
	VORPS        (SI), Y1, Y0
	EXP8
	VMOVUPS      Y3, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DI
	DECQ         CX
	JNZ          loop
	VZEROUPPER

done:
	RET

// func expScaledKernelAVX2(d, a, s *float32, rows, n int)
//
// Row r: d[r*n+j] = e^(s[r] a[r*n+j]) for j < n, the product rounded to
// float32 first; n must be a positive multiple of 8.
TEXT ·expScaledKernelAVX2(SB), NOSPLIT, $0-40
	MOVQ  d+0(FP), DI
	MOVQ  a+8(FP), SI
	MOVQ  s+16(FP), DX
	MOVQ  rows+24(FP), R8
	MOVQ  n+32(FP), R9
	SHRQ  $3, R9
	TESTQ R8, R8
	JZ    sdone
	EXPCONSTS

srow:
	MOVQ R9, CX

scol:
	VBROADCASTSS (DX), Y0
	VMULPS       (SI), Y0, Y0
	EXP8
	VMOVUPS      Y3, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DI
	DECQ         CX
	JNZ          scol
	ADDQ         $4, DX
	DECQ         R8
	JNZ          srow
	VZEROUPPER

sdone:
	RET

// sigmoidConsts holds eight lanes of the sign bit, eight of -87.3 (below
// which silu takes siluFar) and four of 1.0 in float64.
DATA sigmoidConsts<>+0(SB)/8, $0x8000000080000000
DATA sigmoidConsts<>+8(SB)/8, $0x8000000080000000
DATA sigmoidConsts<>+16(SB)/8, $0x8000000080000000
DATA sigmoidConsts<>+24(SB)/8, $0x8000000080000000
DATA sigmoidConsts<>+32(SB)/8, $0xc2ae999ac2ae999a
DATA sigmoidConsts<>+40(SB)/8, $0xc2ae999ac2ae999a
DATA sigmoidConsts<>+48(SB)/8, $0xc2ae999ac2ae999a
DATA sigmoidConsts<>+56(SB)/8, $0xc2ae999ac2ae999a
DATA sigmoidConsts<>+64(SB)/8, $0x3ff0000000000000
DATA sigmoidConsts<>+72(SB)/8, $0x3ff0000000000000
DATA sigmoidConsts<>+80(SB)/8, $0x3ff0000000000000
DATA sigmoidConsts<>+88(SB)/8, $0x3ff0000000000000
GLOBL sigmoidConsts<>(SB), RODATA|NOPTR, $96

// SIGMOIDHALF(off) finishes the four floats at byte off of the block in
// float64, from e and num on the stack: d = num / (1+e), times x for silu
// (DX not zero), rounded once to float32.
#define SIGMOIDHALF(off, skip) \
	VCVTPS2PD  off(SP), Y2;          \
	VADDPD     64(R8), Y2, Y2;       \
	VCVTPS2PD  32+off(SP), Y1;       \
	TESTQ      DX, DX;               \
	JZ         skip;                 \
	VCVTPS2PD  off(SI), Y0;          \
	VMULPD     Y0, Y1, Y1;           \
skip:                                \
	VDIVPD     Y2, Y1, Y1;           \
	VCVTPD2PSY Y1, X1;               \
	VMOVUPS    X1, off(DI)

// func sigmoidKernelAVX2(d, x *float32, n int, silu bool) (far bool)
//
// For i < n, n a multiple of 8: with e = e^-|x[i]| in float32 and num = e
// where x[i] < 0, else 1, d[i] = num / (1+e) (sigmoid), or x[i] times that
// (silu), computed in float64 and rounded once. far reports, for silu,
// whether some x[i] < -87.3. d may be x. The stack holds e and num of the
// block of eight.
TEXT ·sigmoidKernelAVX2(SB), NOSPLIT, $64-33
	MOVQ    d+0(FP), DI
	MOVQ    x+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVBQZX silu+24(FP), DX
	XORQ    R11, R11
	LEAQ    sigmoidConsts<>(SB), R8
	SHRQ    $3, CX
	JZ      gdone
	EXPCONSTS

gloop:
	VMOVUPS   (SI), Y0
	VORPS     (R8), Y0, Y0
	EXP8
	VMOVUPS   (SI), Y0
	VBLENDVPS Y0, Y3, Y15, Y1
	VMOVUPS   Y3, 0(SP)
	VMOVUPS   Y1, 32(SP)
	VCMPPS    $1, 32(R8), Y0, Y2
	VMOVMSKPS Y2, R10
	ORQ       R10, R11
	SIGMOIDHALF(0, glo)
	SIGMOIDHALF(16, ghi)
	ADDQ      $32, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       gloop
	VZEROUPPER

gdone:
	TESTQ R11, R11
	SETNE AX
	ANDB  DX, AX
	MOVB  AX, far+32(FP)
	RET
