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

// func scanBackAVX2(nch, n int, hprev, hcur, decay, a, br, cr *float32, bc *float64, dt, x, dy, d *float32,
//	dh, dA, dB, dC, dx, dd, dD *float64, ox, odelta, ob, oc *float32)
//
// One time step t of the selective scan's backward pass (see scanBackStep)
// for nch channels of n states each (n a positive multiple of 4), without
// injection or dhs, in float64 lanes, four states per instruction. hprev,
// hcur, decay, a, dh and dA hold the channels' rows of n one after the
// other; br, cr, dB and dC ([n]) are shared by the channels; dt, x, dy, d,
// dx, dd and dD are [nch]. It first sets bc = [float64(br), float64(cr)]
// ([2][n]) and dB = dC = 0; then, for channel j, with gh = dh + dy Cm and
// ghp = gh hprev decay, elementwise in n,
//
//	dC += dy hcur       dB += gh (dt x)       dA += ghp dt
//	dh  = gh decay
//
// and, with the sums over n taken in four lanes and reduced as
// (l0+l1)+(l2+l3),
//
//	dx[j] = dt sum(gh Bm) + dy d[j]     (no dy d[j] when d is nil)
//	dd[j] = x sum(gh Bm) + sum(ghp a)
//	dD[j] += dy x                       (only when d is not nil)
//
// where dt, x, dy and d are those of channel j. The multiply-adds are
// fused. Last, it stores float32(dx) in ox, float32(dd) in odelta ([nch])
// and float32(dB), float32(dC) in ob, oc ([n]), each where not nil.
TEXT ·scanBackAVX2(SB), NOSPLIT, $0-192
	MOVQ   n+8(FP), DX
	SHLQ   $2, DX           // DX = 4n, the bytes of a float32 row
	MOVQ   br+48(FP), SI
	MOVQ   cr+56(FP), DI
	MOVQ   bc+64(FP), R12   // R12 = float64 Bm
	LEAQ   (R12)(DX*2), R13 // R13 = float64 Cm
	MOVQ   dB+120(FP), R14
	MOVQ   dC+128(FP), R15
	VXORPD Y15, Y15, Y15
	XORQ   AX, AX           // AX = 4 x the state index

prep:
	VCVTPS2PD (SI)(AX*1), Y0
	VCVTPS2PD (DI)(AX*1), Y1
	VMOVUPD   Y0, (R12)(AX*2)
	VMOVUPD   Y1, (R13)(AX*2)
	VMOVUPD   Y15, (R14)(AX*2)
	VMOVUPD   Y15, (R15)(AX*2)
	ADDQ      $16, AX
	CMPQ      AX, DX
	JB        prep

	MOVQ hprev+16(FP), SI
	MOVQ hcur+24(FP), DI
	MOVQ decay+32(FP), R8
	MOVQ a+40(FP), R9
	MOVQ dh+104(FP), R10
	MOVQ dA+112(FP), R11
	XORQ BX, BX             // BX = j

channel:
	// X15 = dt, X10 = x, X13 = dy, X14 = dt x; Y13, Y14 and Y15 broadcast.
	MOVQ         dt+72(FP), CX
	VCVTSS2SD    (CX)(BX*4), X15, X15
	MOVQ         x+80(FP), CX
	VCVTSS2SD    (CX)(BX*4), X10, X10
	MOVQ         dy+88(FP), CX
	VCVTSS2SD    (CX)(BX*4), X13, X13
	VMULSD       X10, X15, X14
	VBROADCASTSD X13, Y13
	VBROADCASTSD X14, Y14
	VBROADCASTSD X15, Y15
	VXORPD       Y11, Y11, Y11   // sum(gh Bm)
	VXORPD       Y12, Y12, Y12   // sum(ghp a)
	XORQ         AX, AX

group:
	VCVTPS2PD   (SI)(AX*1), Y0       // hprev
	VCVTPS2PD   (R8)(AX*1), Y1       // decay
	VMULPD      Y1, Y0, Y0           // hp = hprev decay
	VMOVUPD     (R10)(AX*2), Y2
	VFMADD231PD (R13)(AX*2), Y13, Y2 // gh = dh + dy Cm
	VCVTPS2PD   (DI)(AX*1), Y3       // hcur
	VMOVUPD     (R15)(AX*2), Y4
	VFMADD231PD Y3, Y13, Y4          // dC += dy hcur
	VMOVUPD     Y4, (R15)(AX*2)
	VMOVUPD     (R14)(AX*2), Y5
	VFMADD231PD Y2, Y14, Y5          // dB += gh (dt x)
	VMOVUPD     Y5, (R14)(AX*2)
	VFMADD231PD (R12)(AX*2), Y2, Y11 // sum(gh Bm)
	VMULPD      Y0, Y2, Y6           // ghp = gh hp
	VMOVUPD     (R11)(AX*2), Y7
	VFMADD231PD Y6, Y15, Y7          // dA += ghp dt
	VMOVUPD     Y7, (R11)(AX*2)
	VCVTPS2PD   (R9)(AX*1), Y8       // a
	VFMADD231PD Y8, Y6, Y12          // sum(ghp a)
	VMULPD      Y1, Y2, Y9           // dh = gh decay
	VMOVUPD     Y9, (R10)(AX*2)
	ADDQ        $16, AX
	CMPQ        AX, DX
	JB          group

	// X0 = [sum(gh Bm), sum(ghp a)], X1 low = sum(ghp a).
	VHADDPD      Y12, Y11, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD       X1, X0, X0
	VPERMILPD    $1, X0, X1
	VMULSD       X0, X15, X2        // dx = dt sum(gh Bm)
	VFMADD231SD  X0, X10, X1        // dd = x sum(gh Bm) + sum(ghp a)
	MOVQ         d+96(FP), CX
	TESTQ        CX, CX
	JZ           store
	VCVTSS2SD    (CX)(BX*4), X3, X3
	VFMADD231SD  X3, X13, X2        // dx += dy d
	MOVQ         dD+152(FP), CX
	VMULSD       X10, X13, X4
	VADDSD       (CX)(BX*8), X4, X4
	VMOVSD       X4, (CX)(BX*8)     // dD += dy x

store:
	MOVQ      dx+136(FP), CX
	VMOVSD    X2, (CX)(BX*8)
	MOVQ      dd+144(FP), CX
	VMOVSD    X1, (CX)(BX*8)
	MOVQ      ox+160(FP), CX
	TESTQ     CX, CX
	JZ        nox
	VCVTSD2SS X2, X2, X2
	VMOVSS    X2, (CX)(BX*4)

nox:
	MOVQ      odelta+168(FP), CX
	TESTQ     CX, CX
	JZ        nodelta
	VCVTSD2SS X1, X1, X1
	VMOVSS    X1, (CX)(BX*4)

nodelta:
	ADDQ DX, SI
	ADDQ DX, DI
	ADDQ DX, R8
	ADDQ DX, R9
	LEAQ (R10)(DX*2), R10
	LEAQ (R11)(DX*2), R11
	INCQ BX
	CMPQ BX, nch+0(FP)
	JB   channel

	// ob = float32(dB) and oc = float32(dC), where not nil.
	MOVQ  ob+176(FP), CX
	TESTQ CX, CX
	JZ    noB
	XORQ  AX, AX

convB:
	VCVTPD2PSY (R14)(AX*2), X0
	VMOVUPS    X0, (CX)(AX*1)
	ADDQ       $16, AX
	CMPQ       AX, DX
	JB         convB

noB:
	MOVQ  oc+184(FP), CX
	TESTQ CX, CX
	JZ    done
	XORQ  AX, AX

convC:
	VCVTPD2PSY (R15)(AX*2), X0
	VMOVUPS    X0, (CX)(AX*1)
	ADDQ       $16, AX
	CMPQ       AX, DX
	JB         convC

done:
	VZEROUPPER
	RET
