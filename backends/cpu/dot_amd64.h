// Macros shared by the dot-product kernels of gemv_amd64.s and
// lowp_amd64.s.

// PFD is how far ahead in each row (bytes) the eight-row kernels ask for
// the next lines. A decode step's matrices are short (a few MB): the
// hardware prefetcher, which has to pick up eight new streams at each,
// left mamba-130m decode 6-8% slower on Zen 3 (`go test
// ./architectures/mamba -bench 'Decode/130m/(q8|bf16)/threads=1'`); 256
// to 512 bytes measured alike, 768 worse for BF16.
#define PFD 384

// PREFETCH8(off) asks for the line off bytes ahead in each row of an
// eight-row kernel: row r at SI + r*R8, with R9 = 3*R8, R10 = 5*R8,
// R11 = 6*R8 and R12 = 7*R8.
#define PREFETCH8(off) \
	PREFETCHT0 off(SI);        \
	PREFETCHT0 off(SI)(R8*1);  \
	PREFETCHT0 off(SI)(R8*2);  \
	PREFETCHT0 off(SI)(R9*1);  \
	PREFETCHT0 off(SI)(R8*4);  \
	PREFETCHT0 off(SI)(R10*1); \
	PREFETCHT0 off(SI)(R11*1); \
	PREFETCHT0 off(SI)(R12*1)

// REDUCE4(a0, a1, a2, a3, x0, off) sums the lanes of each of the 8-lane
// accumulators a0..a3 (x0 is a0's low half) as
// ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)) and stores the four sums at
// off(DX), using X0.
#define REDUCE4(a0, a1, a2, a3, x0, off) \
	VHADDPS      a1, a0, a0; \
	VHADDPS      a3, a2, a2; \
	VHADDPS      a2, a0, a0; \
	VEXTRACTF128 $1, a0, X0; \
	VADDPS       X0, x0, x0; \
	VMOVUPS      x0, off(DX)
