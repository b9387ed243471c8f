//go:build amd64 && !purego

#include "textflag.h"

// func scanChannelsAVX2(nch, n int, h, w, x, dt, b, c, y *float32)
//
// One token of the selective scan for nch channels of n states each (n a
// positive multiple of 8), without injection: for channel j, with
// dx = dt[j]*x[j], each state becomes h' = w*h + dx*b and
// y[j] = sum_n h'[n] c[n], summed in eight lanes (lane l takes n = l,
// l+8, ... in order) and then reduced as ((l0+l4)+(l1+l5)) +
// ((l2+l6)+(l3+l7)). Every product and sum is rounded on its own (no fused
// multiply-add), so that the Go loop of scanData.run gives the same bits.
// h and w hold the channels' states and decays one after the other; b and
// c are shared.
TEXT ·scanChannelsAVX2(SB), NOSPLIT, $0-72
	MOVQ  nch+0(FP), CX
	MOVQ  n+8(FP), R8
	MOVQ  h+16(FP), DI
	MOVQ  w+24(FP), SI
	MOVQ  x+32(FP), R9
	MOVQ  dt+40(FP), R10
	MOVQ  b+48(FP), R11
	MOVQ  c+56(FP), R12
	MOVQ  y+64(FP), R13
	SHRQ  $3, R8
	TESTQ CX, CX
	JZ    done

channel:
	VMOVSS       (R10), X0
	VMULSS       (R9), X0, X0
	VBROADCASTSS X0, Y0
	VXORPS       Y1, Y1, Y1
	MOVQ         R8, DX
	XORQ         AX, AX

block:
	VMOVUPS (SI), Y2
	VMULPS  (DI), Y2, Y2
	VMULPS  (R11)(AX*1), Y0, Y3
	VADDPS  Y3, Y2, Y2
	VMOVUPS Y2, (DI)
	VMULPS  (R12)(AX*1), Y2, Y3
	VADDPS  Y3, Y1, Y1
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, AX
	DECQ    DX
	JNZ     block

	VEXTRACTF128 $1, Y1, X2
	VADDPS       X2, X1, X1
	VHADDPS      X1, X1, X1
	VHADDPS      X1, X1, X1
	VMOVSS       X1, (R13)
	ADDQ         $4, R9
	ADDQ         $4, R10
	ADDQ         $4, R13
	DECQ         CX
	JNZ          channel

done:
	VZEROUPPER
	RET
