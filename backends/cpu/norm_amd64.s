//go:build amd64 && !purego

#include "textflag.h"

// func rmsSumSquaresAVX2(x *float32, n int) float64
//
// The sum of x[i]^2 for i < n, n a multiple of 8, in float64: lanes 0-3
// and 4-7 of each block of eight go to two 4-lane accumulators, which are
// added and reduced as (l0+l2)+(l1+l3) at the end.
TEXT ·rmsSumSquaresAVX2(SB), NOSPLIT, $0-24
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	SHRQ   $3, CX
	JZ     ssdone

ssloop:
	VCVTPS2PD   (SI), Y2
	VCVTPS2PD   16(SI), Y3
	VFMADD231PD Y2, Y2, Y0
	VFMADD231PD Y3, Y3, Y1
	ADDQ        $32, SI
	DECQ        CX
	JNZ         ssloop

ssdone:
	VADDPD       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD       X1, X0, X0
	VHADDPD      X0, X0, X0
	VMOVSD       X0, ret+16(FP)
	VZEROUPPER
	RET

// func rmsScaleAVX2(d, x, w *float32, n int, inv float64)
//
// d[i] = float32(x[i] * inv * w[i]) for i < n, n a multiple of 8, in
// float64 (w nil: float32(x[i] * inv)). d may be x.
TEXT ·rmsScaleAVX2(SB), NOSPLIT, $0-40
	MOVQ         d+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), DX
	MOVQ         n+24(FP), CX
	VBROADCASTSD inv+32(FP), Y4
	SHRQ         $3, CX
	JZ           scdone
	TESTQ        DX, DX
	JZ           noweight

wloop:
	VCVTPS2PD  (SI), Y0
	VCVTPS2PD  16(SI), Y1
	VCVTPS2PD  (DX), Y2
	VCVTPS2PD  16(DX), Y3
	VMULPD     Y4, Y0, Y0
	VMULPD     Y4, Y1, Y1
	VMULPD     Y2, Y0, Y0
	VMULPD     Y3, Y1, Y1
	VCVTPD2PSY Y0, X0
	VCVTPD2PSY Y1, X1
	VMOVUPS    X0, (DI)
	VMOVUPS    X1, 16(DI)
	ADDQ       $32, SI
	ADDQ       $32, DX
	ADDQ       $32, DI
	DECQ       CX
	JNZ        wloop
	JMP        scdone

noweight:
	VCVTPS2PD  (SI), Y0
	VCVTPS2PD  16(SI), Y1
	VMULPD     Y4, Y0, Y0
	VMULPD     Y4, Y1, Y1
	VCVTPD2PSY Y0, X0
	VCVTPD2PSY Y1, X1
	VMOVUPS    X0, (DI)
	VMOVUPS    X1, 16(DI)
	ADDQ       $32, SI
	ADDQ       $32, DI
	DECQ       CX
	JNZ        noweight

scdone:
	VZEROUPPER
	RET
