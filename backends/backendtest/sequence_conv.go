package backendtest

import (
	"fmt"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	registerFused("conv1d", "ConvKernels", seqTestConv)
	registerFused("conv1d_grad", "ConvKernels", seqTestConvGrad)
	registerFused("conv1d_misuse", "ConvKernels", seqTestConvMisuse)
}

// seqConvCase is one CausalConv1d configuration: x [B,T,C], w [C,K], and
// whether the bias and the previous inputs are given.
type seqConvCase struct {
	B, T, C, K int
	bias, prev bool
}

func (c seqConvCase) String() string {
	return fmt.Sprintf("B%d_T%d_C%d_K%d_bias%t_prev%t", c.B, c.T, c.C, c.K, c.bias, c.prev)
}

var seqConvCases = []seqConvCase{
	{B: 2, T: 7, C: 5, K: 4, bias: true, prev: true},
	{B: 2, T: 13, C: 3, K: 3, bias: true, prev: false},
	{B: 3, T: 2, C: 5, K: 4, bias: false, prev: true}, // T < K-1: windows start inside prev
	{B: 1, T: 5, C: 2, K: 1, bias: true, prev: true},  // K = 1: prev is [B,0,C]
	{B: 1, T: 1, C: 1, K: 1, bias: false, prev: false},
	{B: 1, T: 1, C: 6, K: 4, bias: true, prev: true},  // a decode step
	{B: 2, T: 1, C: 5, K: 3, bias: false, prev: true}, // two sequences' steps
	{B: 1, T: 2, C: 4, K: 4, bias: true, prev: false}, // short, zero prefix
	{B: 2, T: 0, C: 3, K: 4, bias: true, prev: true},  // empty sequence
}

// seqConvData holds the inputs of one case in float32-exact float64; bias
// and prev are nil when absent.
type seqConvData struct {
	x, w, bias, prev []float64
}

// seqConvInputs draws the inputs of case c from U(-1, 1).
func seqConvInputs(c seqConvCase, seed uint64) seqConvData {
	r := newRand(seed)
	d := seqConvData{
		x: f32(randVals(r, c.B*c.T*c.C, -1, 1)),
		w: f32(randVals(r, c.C*c.K, -1, 1)),
	}
	if c.bias {
		d.bias = f32(randVals(r, c.C, -1, 1))
	}
	if c.prev {
		d.prev = f32(randVals(r, c.B*(c.K-1)*c.C, -1, 1))
	}
	return d
}

// seqConvRef is the float64 reference of CausalConv1d: with xx = prev
// followed by x along time, dst[b,t,c] = bias[c] + sum_k w[c,k] xx[b,t+k,c].
// An empty bias or prev means zeros.
func seqConvRef(c seqConvCase, x, w, bias, prev []float64) []float64 {
	xx := func(b, j, ch int) float64 { // j indexes prev ++ x
		if j < c.K-1 {
			if len(prev) == 0 {
				return 0
			}
			return prev[(b*(c.K-1)+j)*c.C+ch]
		}
		return x[(b*c.T+j-(c.K-1))*c.C+ch]
	}
	dst := make([]float64, c.B*c.T*c.C)
	for b := range c.B {
		for t := range c.T {
			for ch := range c.C {
				var s float64
				if len(bias) > 0 {
					s = bias[ch]
				}
				for k := range c.K {
					s += w[ch*c.K+k] * xx(b, t+k, ch)
				}
				dst[(b*c.T+t)*c.C+ch] = s
			}
		}
	}
	return dst
}

// seqTestConv checks CausalConv1d against seqConvRef.
func seqTestConv(t *testing.T, be convBackend) {
	for i, c := range seqConvCases {
		runSub(t, c.String(), func(t *testing.T) {
			d := seqConvInputs(c, 100+uint64(i))
			dst := seqGarbage(be, c.B, c.T, c.C)
			be.CausalConv1d(dst, upload(be, d.x, c.B, c.T, c.C), upload(be, d.w, c.C, c.K),
				seqUploadOpt(be, d.bias, c.C), seqUploadOpt(be, d.prev, c.B, c.K-1, c.C))
			checkRel(t, "dst", download(dst), seqConvRef(c, d.x, d.w, d.bias, d.prev), RelTol)
		})
	}
}

// seqTestConvGrad checks CausalConv1dGrad against finite differences of
// seqConvRef.
func seqTestConvGrad(t *testing.T, be convBackend) {
	for i, c := range seqConvCases {
		runSub(t, c.String(), func(t *testing.T) {
			d := seqConvInputs(c, 200+uint64(i))
			dy := f32(randVals(newRand(300+uint64(i)), c.B*c.T*c.C, -1, 1))
			f := func(in [][]float64) []float64 { return seqConvRef(c, in[0], in[1], in[2], in[3]) }
			want := numericGrad(f, [][]float64{d.x, d.w, d.bias, d.prev}, dy)
			if !c.bias {
				// No bias input to perturb; the bias gradient is still the
				// sum of dy over batch and time.
				want[2] = make([]float64, c.C)
				for j, v := range dy {
					want[2][j%c.C] += v
				}
			}
			x, w := upload(be, d.x, c.B, c.T, c.C), upload(be, d.w, c.C, c.K)
			prev, dyT := seqUploadOpt(be, d.prev, c.B, c.K-1, c.C), upload(be, dy, c.B, c.T, c.C)
			// All requested outputs at once, then each alone, so that a
			// kernel that needs a sibling output to be non-nil is caught.
			masks := [][4]bool{{true, true, true, c.prev}, {true, false, false, false},
				{false, true, false, false}, {false, false, true, false}, {false, false, false, c.prev}}
			for _, m := range masks {
				dx := seqGarbageIf(be, m[0], c.B, c.T, c.C)
				dw := seqGarbageIf(be, m[1], c.C, c.K)
				db := seqGarbageIf(be, m[2], c.C)
				dp := seqGarbageIf(be, m[3], c.B, c.K-1, c.C)
				be.CausalConv1dGrad(dx, dw, db, dp, x, w, prev, dyT)
				seqCheckGrad(t, fmt.Sprintf("dx %v", m), dx, want[0])
				seqCheckGrad(t, fmt.Sprintf("dw %v", m), dw, want[1])
				seqCheckGrad(t, fmt.Sprintf("dbias %v", m), db, want[2])
				seqCheckGrad(t, fmt.Sprintf("dprev %v", m), dp, want[3])
			}
		})
	}
}

// seqTestConvMisuse checks that mismatched shapes panic with ErrShape.
func seqTestConvMisuse(t *testing.T, be convBackend) {
	const B, T, C, K = 2, 5, 3, 4
	x, w, bias := be.Alloc(api.F32, B, T, C), be.Alloc(api.F32, C, K), be.Alloc(api.F32, C)
	prev, dst := be.Alloc(api.F32, B, K-1, C), be.Alloc(api.F32, B, T, C)
	dw, dprev := be.Alloc(api.F32, C, K), be.Alloc(api.F32, B, K-1, C)
	for _, m := range []struct {
		what string
		fn   func()
	}{
		{"w with C+1 rows", func() { be.CausalConv1d(dst, x, be.Alloc(api.F32, C+1, K), bias, prev) }},
		{"bias of C+1", func() { be.CausalConv1d(dst, x, w, be.Alloc(api.F32, C+1), prev) }},
		{"prev of K steps", func() { be.CausalConv1d(dst, x, w, bias, be.Alloc(api.F32, B, K, C)) }},
		{"prev of B+1 rows", func() { be.CausalConv1d(dst, x, w, bias, be.Alloc(api.F32, B+1, K-1, C)) }},
		{"dst of T+1 steps", func() { be.CausalConv1d(be.Alloc(api.F32, B, T+1, C), x, w, bias, prev) }},
		{"x of rank 2", func() { be.CausalConv1d(be.Alloc(api.F32, T, C), be.Alloc(api.F32, T, C), w, bias, nil) }},
		{"grad dw of K+1", func() { be.CausalConv1dGrad(nil, be.Alloc(api.F32, C, K+1), nil, nil, x, w, prev, dst) }},
		{"grad dprev of K steps", func() { be.CausalConv1dGrad(nil, dw, nil, be.Alloc(api.F32, B, K, C), x, w, prev, dst) }},
		{"grad dx of C+1", func() { be.CausalConv1dGrad(be.Alloc(api.F32, B, T, C+1), dw, nil, dprev, x, w, prev, dst) }},
		{"grad dbias of C+1", func() { be.CausalConv1dGrad(nil, dw, be.Alloc(api.F32, C+1), nil, x, w, prev, dst) }},
		{"grad dy of T+1 steps", func() { be.CausalConv1dGrad(nil, dw, nil, dprev, x, w, prev, be.Alloc(api.F32, B, T+1, C)) }},
	} {
		mustPanicWith(t, m.what, m.fn, api.ErrShape)
	}
}
