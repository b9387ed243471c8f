package cpu_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// Helpers shared by the sequence-kernel tests (conv, scan, rotary,
// retention), prefixed seq to keep them apart from other tests of the
// package.

// seqThreads are the thread counts every sequence test runs with: one, and
// three (which does not divide most sizes, so the work splits are uneven).
var seqThreads = []int{1, 3}

// seqEach runs fn once per thread count, as a subtest.
func seqEach(t *testing.T, fn func(t *testing.T, b *cpu.Backend)) {
	for _, n := range seqThreads {
		t.Run(fmt.Sprintf("threads=%d", n), func(t *testing.T) {
			fn(t, cpu.New(api.BackendOptions{Threads: n}))
		})
	}
}

// seqVals returns n values uniform in [lo,hi), rounded to float32 so that
// the float64 references see exactly what the kernels see.
func seqVals(r *rand.Rand, n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(float32(lo + (hi-lo)*r.Float64()))
	}
	return v
}

// seqUp uploads v to a new F32 tensor; nil v gives a nil tensor.
func seqUp(b api.Backend, v []float64, shape ...int) api.Tensor {
	if v == nil {
		return nil
	}
	h := make([]float32, len(v))
	for i, x := range v {
		h[i] = float32(x)
	}
	return api.FromFloat32s(b, h, shape...)
}

// seqDown downloads an F32 tensor as float64 values; nil gives nil.
func seqDown(t api.Tensor) []float64 {
	if t == nil {
		return nil
	}
	h := api.Float32s(t)
	out := make([]float64, len(h))
	for i, x := range h {
		out[i] = float64(x)
	}
	return out
}

// seqNaN returns a tensor filled with NaN, to check that a kernel
// overwrites its whole output.
func seqNaN(b api.Backend, shape ...int) api.Tensor {
	t := b.Alloc(api.F32, shape...)
	b.Fill(t, float32(math.NaN()))
	return t
}

// seqRelErr returns max |got-want| / max |want| (the absolute error when
// want is all zero); NaN gives +Inf.
func seqRelErr(got, want []float64) float64 {
	var diff, scale float64
	for i := range want {
		d := math.Abs(got[i] - want[i])
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		diff, scale = max(diff, d), max(scale, math.Abs(want[i]))
	}
	if scale == 0 {
		return diff
	}
	return diff / scale
}

// seqCheck fails t unless got matches want to tol in seqRelErr.
func seqCheck(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	if e := seqRelErr(got, want); e > tol {
		t.Errorf("%s: relative error %.3g > %.1g", what, e, tol)
	}
}

// seqGradTol is the tolerance of a gradient against finite differences.
const seqGradTol = 1e-3

// seqFD returns the gradients of L = sum_j dy[j] f(in)[j] with respect to
// in[k] for each k in which, by central differences of the float64 f.
func seqFD(f func(in [][]float64) []float64, in [][]float64, dy []float64, which ...int) [][]float64 {
	loss := func() float64 {
		var s float64
		for j, y := range f(in) {
			s += dy[j] * y
		}
		return s
	}
	grads := make([][]float64, len(in))
	for _, k := range which {
		g := make([]float64, len(in[k]))
		for i, x := range in[k] {
			h := 1e-6 * max(1, math.Abs(x))
			in[k][i] = x + h
			up := loss()
			in[k][i] = x - h
			down := loss()
			in[k][i] = x
			g[i] = (up - down) / (2 * h)
		}
		grads[k] = g
	}
	return grads
}

// seqWantPanic fails t unless fn panics with an error wrapping sentinel.
func seqWantPanic(t *testing.T, what string, sentinel error, fn func()) {
	t.Helper()
	var r any
	func() {
		defer func() { r = recover() }()
		fn()
	}()
	err, ok := r.(error)
	if !ok || !errors.Is(err, sentinel) {
		t.Errorf("%s: panicked with %v, want an error wrapping %v", what, r, sentinel)
	}
}

// seqBits reports whether two float slices are bit for bit equal.
func seqBits(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
}

type convCase struct {
	B, T, C, K int
	bias, prev bool
}

func (c convCase) String() string {
	return fmt.Sprintf("B%d_T%d_C%d_K%d_bias%v_prev%v", c.B, c.T, c.C, c.K, c.bias, c.prev)
}

// convRef is the float64 reference: y[b,t,c] = bias[c] + sum_k w[c,k] *
// xx[b,t+k,c], xx = prev (or zeros) followed by x.
func convRef(c convCase, x, w, bias, prev []float64) []float64 {
	y := make([]float64, c.B*c.T*c.C)
	for b := range c.B {
		for t := range c.T {
			for ch := range c.C {
				var s float64
				if bias != nil {
					s = bias[ch]
				}
				for k := range c.K {
					i := t + k // index into xx
					var v float64
					switch {
					case i >= c.K-1:
						v = x[(b*c.T+i-(c.K-1))*c.C+ch]
					case prev != nil:
						v = prev[(b*(c.K-1)+i)*c.C+ch]
					}
					s += w[ch*c.K+k] * v
				}
				y[(b*c.T+t)*c.C+ch] = s
			}
		}
	}
	return y
}

// convInputs draws x, w, bias and prev for c (bias and prev nil when off).
func convInputs(c convCase, seed uint64) (x, w, bias, prev []float64) {
	r := rand.New(rand.NewPCG(seed, 1))
	x = seqVals(r, c.B*c.T*c.C, -1, 1)
	w = seqVals(r, c.C*c.K, -1, 1)
	if c.bias {
		bias = seqVals(r, c.C, -1, 1)
	}
	if c.prev {
		prev = seqVals(r, c.B*(c.K-1)*c.C, -1, 1)
	}
	return
}

func TestCausalConv1d(t *testing.T) {
	cases := []convCase{
		{B: 2, T: 7, C: 5, K: 4, bias: true, prev: true},
		{B: 2, T: 7, C: 5, K: 4},
		{B: 1, T: 2, C: 3, K: 4, prev: true}, // T < K-1
		{B: 3, T: 5, C: 2, K: 1, bias: true},
		{B: 1, T: 0, C: 3, K: 3, bias: true, prev: true},
		{B: 3, T: 100, C: 37, K: 4, bias: true, prev: true}, // rows split over threads
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, c := range cases {
			x, w, bias, prev := convInputs(c, uint64(i))
			dst := seqNaN(b, c.B, c.T, c.C)
			b.CausalConv1d(dst, seqUp(b, x, c.B, c.T, c.C), seqUp(b, w, c.C, c.K),
				seqUp(b, bias, c.C), seqUp(b, prev, c.B, c.K-1, c.C))
			seqCheck(t, c.String(), seqDown(dst), convRef(c, x, w, bias, prev), 1e-5)
		}
	})
}

func TestCausalConv1dGrad(t *testing.T) {
	cases := []convCase{
		{B: 2, T: 7, C: 5, K: 4, bias: true, prev: true},
		{B: 2, T: 7, C: 5, K: 4},
		{B: 1, T: 2, C: 3, K: 4, prev: true},
		{B: 3, T: 5, C: 2, K: 1, bias: true},
		{B: 2, T: 40, C: 9, K: 3, bias: true, prev: true},
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, c := range cases {
			x, w, bias, prev := convInputs(c, uint64(10+i))
			r := rand.New(rand.NewPCG(uint64(i), 2))
			dy := seqVals(r, c.B*c.T*c.C, -1, 1)
			// dprev is asked for even without prev: the gradient with
			// respect to the zero prefix.
			prevIn := prev
			if prevIn == nil {
				prevIn = make([]float64, c.B*(c.K-1)*c.C)
			}
			f := func(in [][]float64) []float64 { return convRef(c, in[0], in[1], in[2], in[3]) }
			biasIn := bias
			if biasIn == nil {
				biasIn = make([]float64, c.C)
			}
			want := seqFD(f, [][]float64{x, w, biasIn, prevIn}, dy, 0, 1, 2, 3)
			dx, dw := seqNaN(b, c.B, c.T, c.C), seqNaN(b, c.C, c.K)
			dbias, dprev := seqNaN(b, c.C), seqNaN(b, c.B, c.K-1, c.C)
			b.CausalConv1dGrad(dx, dw, dbias, dprev, seqUp(b, x, c.B, c.T, c.C), seqUp(b, w, c.C, c.K),
				seqUp(b, prev, c.B, c.K-1, c.C), seqUp(b, dy, c.B, c.T, c.C))
			seqCheck(t, c.String()+" dx", seqDown(dx), want[0], seqGradTol)
			seqCheck(t, c.String()+" dw", seqDown(dw), want[1], seqGradTol)
			seqCheck(t, c.String()+" dbias", seqDown(dbias), want[2], seqGradTol)
			seqCheck(t, c.String()+" dprev", seqDown(dprev), want[3], seqGradTol)

			// Each output alone gives the same values as all together.
			dw2 := seqNaN(b, c.C, c.K)
			b.CausalConv1dGrad(nil, dw2, nil, nil, seqUp(b, x, c.B, c.T, c.C), seqUp(b, w, c.C, c.K),
				seqUp(b, prev, c.B, c.K-1, c.C), seqUp(b, dy, c.B, c.T, c.C))
			if !seqBits(seqDown(dw2), seqDown(dw)) {
				t.Errorf("%s: dw alone differs from dw with the other gradients", c)
			}
		}
	})
}

// TestCausalConv1dThreads checks that results do not depend on the thread
// count on sizes that split into several parts.
func TestCausalConv1dThreads(t *testing.T) {
	c := convCase{B: 3, T: 100, C: 37, K: 4, bias: true, prev: true}
	x, w, bias, prev := convInputs(c, 99)
	dy := seqVals(rand.New(rand.NewPCG(99, 2)), c.B*c.T*c.C, -1, 1)
	run := func(threads int) [][]float64 {
		b := cpu.New(api.BackendOptions{Threads: threads})
		xt, wt, pt := seqUp(b, x, c.B, c.T, c.C), seqUp(b, w, c.C, c.K), seqUp(b, prev, c.B, c.K-1, c.C)
		y := b.Alloc(api.F32, c.B, c.T, c.C)
		b.CausalConv1d(y, xt, wt, seqUp(b, bias, c.C), pt)
		dx, dw, db, dp := b.Alloc(api.F32, c.B, c.T, c.C), b.Alloc(api.F32, c.C, c.K), b.Alloc(api.F32, c.C), b.Alloc(api.F32, c.B, c.K-1, c.C)
		b.CausalConv1dGrad(dx, dw, db, dp, xt, wt, pt, seqUp(b, dy, c.B, c.T, c.C))
		return [][]float64{seqDown(y), seqDown(dx), seqDown(dw), seqDown(db), seqDown(dp)}
	}
	one, many := run(1), run(4)
	for i := range one {
		if !seqBits(one[i], many[i]) {
			t.Errorf("output %d differs between 1 and 4 threads", i)
		}
	}
}

// TestCausalConv1dSteps checks that a sequence convolved one token at a
// time, carrying the K-1 previous inputs as a decode step does (the
// weights read as [C,K]), gives the bits of the whole sequence at once
// (the weights transposed to [K,C]).
func TestCausalConv1dSteps(t *testing.T) {
	c := convCase{B: 1, T: 9, C: 37, K: 4, bias: true, prev: true}
	x, w, bias, prev := convInputs(c, 7)
	b := cpu.New(api.BackendOptions{Threads: 1})
	wt, bt := seqUp(b, w, c.C, c.K), seqUp(b, bias, c.C)
	whole := b.Alloc(api.F32, c.B, c.T, c.C)
	b.CausalConv1d(whole, seqUp(b, x, c.B, c.T, c.C), wt, bt, seqUp(b, prev, c.B, c.K-1, c.C))
	want := seqDown(whole)
	ctx := slices.Clone(prev) // the last K-1 inputs
	for tt := range c.T {
		xt := x[tt*c.C : (tt+1)*c.C]
		y := b.Alloc(api.F32, 1, 1, c.C)
		b.CausalConv1d(y, seqUp(b, xt, 1, 1, c.C), wt, bt, seqUp(b, ctx, 1, c.K-1, c.C))
		if !seqBits(seqDown(y), want[tt*c.C:(tt+1)*c.C]) {
			t.Fatalf("token %d: the step differs from the whole sequence", tt)
		}
		ctx = append(ctx[c.C:], xt...)
	}
}

func TestCausalConv1dMisuse(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	x, w := b.Alloc(api.F32, 2, 5, 3), b.Alloc(api.F32, 3, 4)
	y := b.Alloc(api.F32, 2, 5, 3)
	seqWantPanic(t, "w of K 0", api.ErrShape, func() { b.CausalConv1d(y, x, b.Alloc(api.F32, 3, 0), nil, nil) })
	seqWantPanic(t, "prev of K steps", api.ErrShape, func() { b.CausalConv1d(y, x, w, nil, b.Alloc(api.F32, 2, 4, 3)) })
	seqWantPanic(t, "I32 x", api.ErrDType, func() { b.CausalConv1d(y, b.Alloc(api.I32, 2, 5, 3), w, nil, nil) })
	seqWantPanic(t, "dbias of C+1", api.ErrShape, func() { b.CausalConv1dGrad(nil, nil, b.Alloc(api.F32, 4), nil, x, w, nil, y) })
}
