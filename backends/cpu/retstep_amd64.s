//go:build amd64 && !purego

#include "textflag.h"

// func retStepAVX2(n int, alpha, ka, qa float32, src, v, dst, o *float32)
//
// For i < n (a multiple of 8): dst[i] = alpha*src[i] + ka*v[i] (the product
// alpha*src[i] rounded, then one fused multiply-add), or ka*v[i] when src
// is nil; then o[i] += qa*dst[i], fused. dst may be src.
TEXT ·retStepAVX2(SB), NOSPLIT, $0-56
	MOVQ         n+0(FP), CX
	VBROADCASTSS alpha+8(FP), Y0
	VBROADCASTSS ka+12(FP), Y1
	VBROADCASTSS qa+16(FP), Y2
	MOVQ         src+24(FP), SI
	MOVQ         v+32(FP), DI
	MOVQ         dst+40(FP), DX
	MOVQ         o+48(FP), R8
	SHRQ         $3, CX
	JZ           done
	TESTQ        SI, SI
	JZ           first

decay:
	VMULPS      (SI), Y0, Y3
	VFMADD231PS (DI), Y1, Y3
	VMOVUPS     Y3, (DX)
	VMOVUPS     (R8), Y4
	VFMADD231PS Y3, Y2, Y4
	VMOVUPS     Y4, (R8)
	ADDQ        $32, SI
	ADDQ        $32, DI
	ADDQ        $32, DX
	ADDQ        $32, R8
	DECQ        CX
	JNZ         decay
	JMP         done

first:
	VMULPS      (DI), Y1, Y3
	VMOVUPS     Y3, (DX)
	VMOVUPS     (R8), Y4
	VFMADD231PS Y3, Y2, Y4
	VMOVUPS     Y4, (R8)
	ADDQ        $32, DI
	ADDQ        $32, DX
	ADDQ        $32, R8
	DECQ        CX
	JNZ         first

done:
	VZEROUPPER
	RET
