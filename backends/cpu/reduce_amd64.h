// REDUCE4(a0, a1, a2, a3, x0, off) sums the lanes of each of the 8-lane
// accumulators a0..a3 (x0 is a0's low half) as
// ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)) and stores the four sums at
// off(DX), using X0. Included by the dot-product kernels of gemv_amd64.s
// and lowp_amd64.s.
#define REDUCE4(a0, a1, a2, a3, x0, off) \
	VHADDPS      a1, a0, a0; \
	VHADDPS      a3, a2, a2; \
	VHADDPS      a2, a0, a0; \
	VEXTRACTF128 $1, a0, X0; \
	VADDPS       X0, x0, x0; \
	VMOVUPS      x0, off(DX)
