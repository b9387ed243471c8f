package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/backendtest"
)

// The references of reference.go against the CPU backend's fused kernels:
// the same graph on the CPU backend and on backendtest.KernelsOnly of it,
// from the same inputs, must give the same outputs and, through the tape,
// the same gradients of every input, to refTol in the max-norm sense (max
// |ref - fused| over max |fused|). Both are float32 computations of the
// same function that round differently (the fused kernels keep s_p and the
// decay factors in float64, sum in other orders, and so on); measured, the
// largest difference over these cases is below 1e-6.
const refTol = 1e-5

// fusedAndReference returns the CPU backend and the same backend with its
// fused kernels hidden, on which nn runs its references.
func fusedAndReference() (fused, ref api.Backend) {
	b := newBackend()
	if _, ok := b.(api.RetentionKernels); !ok {
		panic("the CPU backend has no fused retention")
	}
	ref = backendtest.KernelsOnly(b)
	if _, ok := ref.(api.ConvKernels); ok {
		panic("KernelsOnly exposes a fused kernel")
	}
	return b, ref
}

// forSequenceBackends runs fn, a test of the model-family ops, on the CPU
// backend (its fused kernels) and on KernelsOnly of it (nn's references).
func forSequenceBackends(t *testing.T, fn func(t *testing.T, b api.Backend)) {
	fused, ref := fusedAndReference()
	t.Run("fused", func(t *testing.T) { fn(t, fused) })
	t.Run("reference", func(t *testing.T) { fn(t, ref) })
}

// refInput is an input of a compared graph: values uniform in [lo, hi) of
// shape, or an absent input (a nil Var) when shape is nil.
type refInput struct {
	name   string
	lo, hi float64
	shape  []int
}

// refRun is what one backend computed: the outputs' values and each
// input's gradient (nil for an absent input; zeros when none arrived).
type refRun struct {
	outs, grads [][]float32
}

// runGraph builds build's graph on a recording tape of b from data, sums
// each output times fixed random weights into the loss, and runs Backward.
func runGraph(b api.Backend, ins []refInput, data [][]float32, seed uint64, build func(tp *Tape, in []*Var) []*Var) refRun {
	leaves := make([]*Var, len(ins))
	for i, in := range ins {
		if in.shape != nil {
			leaves[i] = NewVar(api.FromFloat32s(b, data[i], in.shape...), true)
		}
	}
	tp := NewTape(b)
	var run refRun
	var loss *Var
	for j, y := range build(tp, leaves) {
		run.outs = append(run.outs, api.Float32s(y.Value()))
		w := make([]float32, y.Shape().NumElements())
		r := rand.New(rand.NewPCG(seed, uint64(j)))
		for i := range w {
			w[i] = float32(2*r.Float64() - 1)
		}
		term := tp.Sum(tp.Mul(y, NewVar(api.FromFloat32s(b, w, y.Shape()...), false)))
		if loss == nil {
			loss = term
		} else {
			loss = tp.Add(loss, term)
		}
	}
	tp.Backward(loss)
	for _, l := range leaves {
		switch {
		case l == nil:
			run.grads = append(run.grads, nil)
		case l.Grad() == nil: // no contribution: a zero gradient
			run.grads = append(run.grads, make([]float32, l.Shape().NumElements()))
		default:
			run.grads = append(run.grads, api.Float32s(l.Grad()))
		}
	}
	return run
}

// checkReference runs build on the fused and the reference backend from
// the same random inputs and compares the outputs and the gradients.
func checkReference(t *testing.T, seed uint64, ins []refInput, build func(tp *Tape, in []*Var) []*Var) {
	t.Helper()
	r := newRand(seed)
	data := make([][]float32, len(ins))
	for i, in := range ins {
		if in.shape == nil {
			continue
		}
		data[i] = make([]float32, api.Shape(in.shape).NumElements())
		for j := range data[i] {
			data[i][j] = float32(in.lo + (in.hi-in.lo)*r.Float64())
		}
	}
	fused, ref := fusedAndReference()
	want := runGraph(fused, ins, data, seed, build)
	got := runGraph(ref, ins, data, seed, build)
	worst := 0.0
	compare := func(what string, g, w []float32) {
		t.Helper()
		wd := make([]float64, len(w))
		for i, x := range w {
			wd[i] = float64(x)
		}
		if len(g) != len(w) {
			t.Errorf("%s: %d values, want %d", what, len(g), len(w))
			return
		}
		e, i := relErr(g, wd)
		worst = max(worst, e)
		if e > refTol || math.IsNaN(e) {
			t.Errorf("%s: reference differs from the fused kernel by %.3g > %.0e (worst at %d: %.8g, fused %.8g)",
				what, e, refTol, i, g[i], w[i])
		}
	}
	for j := range want.outs {
		compare(fmt.Sprintf("output %d", j), got.outs[j], want.outs[j])
	}
	for i, in := range ins {
		if in.shape != nil {
			compare("gradient of "+in.name, got.grads[i], want.grads[i])
		}
	}
	t.Logf("largest relative difference from the fused kernel: %.3g", worst)
}

// opt returns shape when on, else nil (an absent input).
func opt(on bool, shape ...int) []int {
	if on {
		return shape
	}
	return nil
}

func TestReferenceCausalConv1d(t *testing.T) {
	for i, c := range []struct {
		B, T, C, K int
		bias, prev bool
	}{
		{2, 7, 5, 4, true, true}, {2, 7, 5, 4, false, false}, {1, 1, 3, 4, true, false},
		{3, 5, 2, 1, true, true}, {1, 9, 4, 2, false, true}, {2, 0, 3, 4, true, true},
	} {
		t.Run(label("B%d_T%d_C%d_K%d_bias%t_prev%t", c.B, c.T, c.C, c.K, c.bias, c.prev), func(t *testing.T) {
			ins := []refInput{{"x", -1, 1, []int{c.B, c.T, c.C}}, {"w", -1, 1, []int{c.C, c.K}},
				{"bias", -1, 1, opt(c.bias, c.C)}, {"prev", -1, 1, opt(c.prev, c.B, c.K-1, c.C)}}
			checkReference(t, uint64(100+i), ins, func(tp *Tape, in []*Var) []*Var {
				return []*Var{tp.CausalConv1d(in[0], in[1], in[2], in[3])}
			})
		})
	}
}

func TestReferenceSelectiveScan(t *testing.T) {
	type scanCase struct {
		B, T, E, N                    int
		d, h0, inj, withState, withHs bool
	}
	var cases []scanCase
	for mask := range 32 {
		on := func(bit int) bool { return mask&(1<<bit) != 0 }
		cases = append(cases, scanCase{2, 6, 3, 4, on(0), on(1), on(2), on(3), on(4)})
	}
	cases = append(cases, scanCase{1, 1, 5, 3, true, true, true, true, true}, scanCase{2, 17, 4, 2, true, false, true, true, false},
		scanCase{2, 0, 3, 2, true, true, false, true, true})
	for i, c := range cases {
		name := label("B%d_T%d_E%d_N%d_D%t_H0%t_inject%t_hT%t_hs%t", c.B, c.T, c.E, c.N, c.d, c.h0, c.inj, c.withState, c.withHs)
		t.Run(name, func(t *testing.T) {
			ins := []refInput{
				{"X", -1, 1, []int{c.B, c.T, c.E}}, {"Delta", 0.05, 1, []int{c.B, c.T, c.E}},
				{"A", -2, -0.2, []int{c.E, c.N}}, {"Bm", -1, 1, []int{c.B, c.T, c.N}}, {"Cm", -1, 1, []int{c.B, c.T, c.N}},
				{"D", -1, 1, opt(c.d, c.E)}, {"H0", -1, 1, opt(c.h0, c.B, c.E, c.N)},
				{"Inject", -0.5, 0.5, opt(c.inj, c.B, c.T, c.E, c.N)},
			}
			checkReference(t, uint64(200+i), ins, func(tp *Tape, in []*Var) []*Var {
				y, hT, hs := tp.SelectiveScan(ScanVars{X: in[0], Delta: in[1], A: in[2], Bm: in[3], Cm: in[4],
					D: in[5], H0: in[6], Inject: in[7]}, c.withState, c.withHs)
				outs := []*Var{y}
				if c.withState {
					outs = append(outs, hT)
				}
				if c.withHs {
					outs = append(outs, hs)
				}
				return outs
			})
		})
	}
}

func TestReferenceRotary(t *testing.T) {
	for i, c := range []struct {
		shape  []int
		offset int
	}{
		{[]int{2, 3, 7, 8}, 0}, {[]int{5, 2}, 3}, {[]int{2, 1, 6}, 1000}, {[]int{3, 0, 4}, 2},
	} {
		t.Run(label("%v_offset%d", c.shape, c.offset), func(t *testing.T) {
			theta := RotaryTheta(c.shape[len(c.shape)-1])
			checkReference(t, uint64(300+i), []refInput{{"x", -1, 1, c.shape}}, func(tp *Tape, in []*Var) []*Var {
				return []*Var{tp.Rotary(in[0], theta, c.offset)}
			})
		})
	}
}

func TestReferenceRetention(t *testing.T) {
	type retCase struct {
		form            api.RetentionForm
		B, H, T, dk, dv int
		chunk, offset   int
		s0, withState   bool
		scale           float64 // of Q and K: 1 puts the parallel rows on both sides of the lower clamp, 8 some at the upper
	}
	var cases []retCase
	for _, T := range []int{1, 9, 70} {
		cases = append(cases,
			retCase{api.RetentionParallel, 2, 3, T, 4, 5, 0, 0, false, false, 1},
			retCase{api.RetentionParallel, 1, 3, T, 8, 3, 0, 0, false, false, 8},
			retCase{api.RetentionParallel, 1, 3, T, 4, 3, 0, 0, false, false, 400},
			retCase{api.RetentionRecurrent, 2, 3, T, 4, 5, 0, 0, false, true, 1},
			retCase{api.RetentionRecurrent, 2, 3, T, 4, 5, 0, 7, true, true, 1},
			retCase{api.RetentionRecurrent, 1, 2, T, 3, 6, 0, 0, true, false, 1}, // S0 at offset 0: no part
		)
		for _, chunk := range []int{1, 4, 64} {
			cases = append(cases,
				retCase{api.RetentionChunkwise, 2, 3, T, 4, 5, chunk, 0, false, true, 1},
				retCase{api.RetentionChunkwise, 2, 2, T, 5, 4, chunk, 33, true, true, 1},
				retCase{api.RetentionChunkwise, 1, 3, T, 4, 5, chunk, 2, true, false, 1},
			)
		}
	}
	cases = append(cases,
		retCase{api.RetentionParallel, 2, 2, 0, 4, 3, 0, 0, false, false, 1},
		retCase{api.RetentionChunkwise, 2, 2, 0, 4, 3, 2, 5, true, true, 1},
		retCase{api.RetentionRecurrent, 2, 2, 0, 4, 3, 0, 0, false, true, 1},
	)
	for i, c := range cases {
		name := label("%v_B%d_H%d_T%d_dk%d_dv%d_chunk%d_offset%d_S0%t_sT%t_scale%g", c.form, c.B, c.H, c.T, c.dk, c.dv,
			c.chunk, c.offset, c.s0, c.withState, c.scale)
		t.Run(name, func(t *testing.T) {
			gamma := make([]float32, c.H)
			for h := range gamma {
				gamma[h] = float32(1 - math.Pow(2, float64(-2-h)))
			}
			k := c.scale / math.Sqrt(float64(c.dk))
			ins := []refInput{
				{"Q", -c.scale, c.scale, []int{c.B, c.H, c.T, c.dk}}, {"K", -k, k, []int{c.B, c.H, c.T, c.dk}},
				{"V", -1, 1, []int{c.B, c.H, c.T, c.dv}}, {"S0", -1, 1, opt(c.s0, c.B, c.H, c.dk, c.dv)},
			}
			checkReference(t, uint64(400+i), ins, func(tp *Tape, in []*Var) []*Var {
				o, sT := tp.Retention(c.form, RetentionVars{Q: in[0], K: in[1], V: in[2], S0: in[3], Gamma: gamma,
					Offset: c.offset, Chunk: c.chunk}, c.withState)
				if c.withState {
					return []*Var{o, sT}
				}
				return []*Var{o}
			})
		})
	}
}

// TestReferenceMisuse checks that the references refuse what the fused
// kernels refuse, with the same sentinel errors.
func TestReferenceMisuse(t *testing.T) {
	_, b := fusedAndReference()
	r := newRand(500)
	q, v, s0 := constant(b, r, 1, 2, 3, 4), constant(b, r, 1, 2, 3, 5), constant(b, r, 1, 2, 4, 5)
	for name, c := range map[string]struct {
		form api.RetentionForm
		in   RetentionVars
	}{
		"decay 1":           {api.RetentionRecurrent, RetentionVars{Q: q, K: q, V: v, Gamma: []float32{0.5, 1}}},
		"decay 0":           {api.RetentionParallel, RetentionVars{Q: q, K: q, V: v, Gamma: []float32{0, 0.5}}},
		"negative offset":   {api.RetentionChunkwise, RetentionVars{Q: q, K: q, V: v, S0: s0, Gamma: []float32{0.5, 0.5}, Offset: -1, Chunk: 2}},
		"offset without S0": {api.RetentionRecurrent, RetentionVars{Q: q, K: q, V: v, Gamma: []float32{0.5, 0.5}, Offset: 3}},
		"chunk 0":           {api.RetentionChunkwise, RetentionVars{Q: q, K: q, V: v, Gamma: []float32{0.5, 0.5}}},
	} {
		t.Run(name, func(t *testing.T) {
			mustPanic(t, api.ErrOutOfRange, func() { NewInferenceTape(b).Retention(c.form, c.in, false) })
			mustPanic(t, api.ErrOutOfRange, func() {
				RetentionInto(b, c.form, b.Alloc(api.F32, 1, 2, 3, 5), nil, api.RetentionArgs{Q: q.Value(), K: q.Value(),
					V: v.Value(), S0: value(c.in.S0), Gamma: c.in.Gamma, Offset: c.in.Offset, Chunk: c.in.Chunk})
			})
		})
	}
	mustPanic(t, api.ErrOutOfRange, func() { NewInferenceTape(b).Rotary(q, []float32{1, 1}, -1) })
	mustPanic(t, api.ErrShape, func() { RotaryInto(b, b.Alloc(api.F32, 1, 2, 3, 4), q.Value(), []float32{1}, 0, true) })
	mustPanic(t, api.ErrShape, func() {
		CausalConv1dInto(b, b.Alloc(api.F32, 1, 2, 5), q.Value(), b.Alloc(api.F32, 4, 2), nil, nil)
	})
}

// TestIntoMatchesFused checks the decode-step entry points on the
// reference backend against the fused kernels: the same destinations,
// including a rotation in place, the inverse rotation, and a retention
// state advanced in place.
func TestIntoMatchesFused(t *testing.T) {
	fused, ref := fusedAndReference()
	r := newRand(600)
	data := func(lo, hi float64, shape ...int) []float32 {
		v := make([]float32, api.Shape(shape).NumElements())
		for i := range v {
			v[i] = float32(lo + (hi-lo)*r.Float64())
		}
		return v
	}
	// run calls fn on each backend with tensors made from the same data by
	// mk, and compares the tensors fn returns.
	run := func(what string, fn func(b api.Backend, mk func(i int) api.Tensor) []api.Tensor, inputs ...func() (lo, hi float64, shape []int)) {
		t.Helper()
		vals := make([][]float32, len(inputs))
		shapes := make([][]int, len(inputs))
		for i, in := range inputs {
			lo, hi, shape := in()
			vals[i], shapes[i] = data(lo, hi, shape...), shape
		}
		results := map[string][][]float32{}
		for name, b := range map[string]api.Backend{"fused": fused, "reference": ref} {
			mk := func(i int) api.Tensor { return api.FromFloat32s(b, vals[i], shapes[i]...) }
			for _, out := range fn(b, mk) {
				results[name] = append(results[name], api.Float32s(out))
			}
		}
		for j, w := range results["fused"] {
			wd := make([]float64, len(w))
			for i, x := range w {
				wd[i] = float64(x)
			}
			if e, i := relErr(results["reference"][j], wd); e > refTol || math.IsNaN(e) {
				t.Errorf("%s: output %d differs by %.3g (worst at %d)", what, j, e, i)
			}
		}
	}
	in := func(lo, hi float64, shape ...int) func() (float64, float64, []int) {
		return func() (float64, float64, []int) { return lo, hi, shape }
	}
	const B, T, C, K, E, N = 2, 1, 6, 4, 6, 3
	run("CausalConv1dInto", func(b api.Backend, mk func(int) api.Tensor) []api.Tensor {
		dst := b.Alloc(api.F32, B, T, C)
		CausalConv1dInto(b, dst, mk(0), mk(1), mk(2), mk(3))
		return []api.Tensor{dst}
	}, in(-1, 1, B, T, C), in(-1, 1, C, K), in(-1, 1, C), in(-1, 1, B, K-1, C))
	run("SelectiveScanInto", func(b api.Backend, mk func(int) api.Tensor) []api.Tensor {
		y, hT, hs := b.Alloc(api.F32, B, T, E), b.Alloc(api.F32, B, E, N), b.Alloc(api.F32, B, T, E, N)
		SelectiveScanInto(b, y, hT, hs, api.ScanArgs{X: mk(0), Delta: mk(1), A: mk(2), Bm: mk(3), Cm: mk(4), D: mk(5),
			H0: mk(6), Inject: mk(7)})
		y2 := b.Alloc(api.F32, B, T, E)
		SelectiveScanInto(b, y2, nil, nil, api.ScanArgs{X: mk(0), Delta: mk(1), A: mk(2), Bm: mk(3), Cm: mk(4)})
		return []api.Tensor{y, hT, hs, y2}
	}, in(-1, 1, B, T, E), in(0.05, 1, B, T, E), in(-2, -0.2, E, N), in(-1, 1, B, T, N), in(-1, 1, B, T, N),
		in(-1, 1, E), in(-1, 1, B, E, N), in(-0.5, 0.5, B, T, E, N))
	theta := RotaryTheta(8)
	run("RotaryInto", func(b api.Backend, mk func(int) api.Tensor) []api.Tensor {
		x := mk(0)
		RotaryInto(b, x, x, theta, 11, false) // in place
		back := b.Alloc(api.F32, 2, 3, 1, 8)
		RotaryInto(b, back, x, theta, 11, true)
		return []api.Tensor{x, back, mk(0)}
	}, in(-1, 1, 2, 3, 1, 8))
	gamma := []float32{0.9, 0.5, 0.99}
	run("RetentionInto", func(b api.Backend, mk func(int) api.Tensor) []api.Tensor {
		o, s := b.Alloc(api.F32, 2, 3, 1, 5), mk(3)
		for pos := 4; pos < 7; pos++ { // the state advanced in place, as a decode step does
			RetentionInto(b, api.RetentionRecurrent, o, s, api.RetentionArgs{Q: mk(0), K: mk(1), V: mk(2), S0: s,
				Gamma: gamma, Offset: pos})
		}
		op := b.Alloc(api.F32, 2, 3, 1, 5)
		RetentionInto(b, api.RetentionParallel, op, nil, api.RetentionArgs{Q: mk(0), K: mk(1), V: mk(2), Gamma: gamma})
		return []api.Tensor{o, s, op}
	}, in(-1, 1, 2, 3, 1, 4), in(-0.5, 0.5, 2, 3, 1, 4), in(-1, 1, 2, 3, 1, 5), in(-1, 1, 2, 3, 4, 5))
}
