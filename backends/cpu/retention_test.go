package cpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

type retCase struct {
	B, H, T, dk, dv int
	offset          int     // absolute position of the first token
	s0              bool    // whether a carried-in state is given
	scale           float64 // magnitude of q and k (1 when 0)
}

func (c retCase) String() string {
	return fmt.Sprintf("B%d_H%d_T%d_dk%d_dv%d_offset%d_S0%v_scale%g", c.B, c.H, c.T, c.dk, c.dv, c.offset, c.s0, c.scale)
}

// retGammas returns decays 1 - 2^-(1+2h): 0.5, 0.875, 0.96875, ..., a fast
// one and slow ones like torchscale's.
func retGammas(H int) []float32 {
	g := make([]float32, H)
	for h := range g {
		g[h] = float32(1 - math.Pow(2, -float64(1+2*h)))
	}
	return g
}

// retInputs draws q, k, v and s0 (nil when off).
func retInputs(c retCase, seed uint64) [][]float64 {
	r := rand.New(rand.NewPCG(seed, 7))
	s := c.scale
	if s == 0 {
		s = 1
	}
	in := [][]float64{
		seqVals(r, c.B*c.H*c.T*c.dk, -s, s),
		seqVals(r, c.B*c.H*c.T*c.dk, -s, s),
		seqVals(r, c.B*c.H*c.T*c.dv, -1, 1),
		nil,
	}
	if c.s0 {
		in[3] = seqVals(r, c.B*c.H*c.dk*c.dv, -1, 1)
	}
	return in
}

func retArgs(b api.Backend, c retCase, in [][]float64, chunk int) api.RetentionArgs {
	return api.RetentionArgs{
		Q: seqUp(b, in[0], c.B, c.H, c.T, c.dk), K: seqUp(b, in[1], c.B, c.H, c.T, c.dk),
		V: seqUp(b, in[2], c.B, c.H, c.T, c.dv), S0: seqUp(b, in[3], c.B, c.H, c.dk, c.dv),
		Gamma: retGammas(c.H), Offset: c.offset, Chunk: chunk,
	}
}

// retRecRef is the float64 recurrent form, with s_p from its own recursion
// s_p = gamma s_{p-1} + 1; it returns o [B,H,T,dv] followed by the final
// state [B,H,dk,dv].
func retRecRef(c retCase, in [][]float64) []float64 {
	q, k, v, s0 := in[0], in[1], in[2], in[3]
	o := make([]float64, c.B*c.H*c.T*c.dv)
	sT := make([]float64, c.B*c.H*c.dk*c.dv)
	gam := retGammas(c.H)
	for bh := range c.B * c.H {
		g := float64(gam[bh%c.H])
		S := make([]float64, c.dk*c.dv)
		if s0 != nil {
			copy(S, s0[bh*c.dk*c.dv:])
		}
		var sPrev float64 // s_{offset-1}
		for range c.offset {
			sPrev = g*sPrev + 1
		}
		for t := range c.T {
			sp := g*sPrev + 1
			row := bh*c.T + t
			for a := range c.dk {
				for j := range c.dv {
					S[a*c.dv+j] = S[a*c.dv+j]*g*math.Sqrt(sPrev/sp) + k[row*c.dk+a]*v[row*c.dv+j]/math.Sqrt(sp)
				}
			}
			for j := range c.dv {
				var s float64
				for a := range c.dk {
					s += q[row*c.dk+a] * S[a*c.dv+j]
				}
				o[row*c.dv+j] = s
			}
			sPrev = sp
		}
		copy(sT[bh*c.dk*c.dv:], S)
	}
	return append(o, sT...)
}

// retParRef is the float64 parallel form. dens, when not nil, gives the row
// normalisers to use (held constant, as the kernel's gradient does); the
// normalisers it used are returned.
func retParRef(c retCase, in [][]float64, dens []float64) (o, used []float64) {
	q, k, v := in[0], in[1], in[2]
	o = make([]float64, c.B*c.H*c.T*c.dv)
	used = make([]float64, c.B*c.H*c.T)
	gam := retGammas(c.H)
	for bh := range c.B * c.H {
		g := float64(gam[bh%c.H])
		var s float64
		for n := range c.T {
			s = g*s + 1
			rowN := bh*c.T + n
			A := make([]float64, n+1)
			var abs float64
			for m := range n + 1 {
				rowM := bh*c.T + m
				var qk float64
				for a := range c.dk {
					qk += q[rowN*c.dk+a] * k[rowM*c.dk+a]
				}
				A[m] = qk * math.Pow(g, float64(n-m)) / math.Sqrt(s)
				abs += math.Abs(A[m])
			}
			den := min(max(abs, 1), 5e4)
			if dens != nil {
				den = dens[rowN]
			}
			used[rowN] = den
			for m := range n + 1 {
				for j := range c.dv {
					o[rowN*c.dv+j] += A[m] / den * v[(bh*c.T+m)*c.dv+j]
				}
			}
		}
	}
	return o, used
}

// retRun runs the kernel and returns o and, for the stateful forms, sT.
func retRun(b *cpu.Backend, form api.RetentionForm, c retCase, in [][]float64, chunk int) (o, sT []float64) {
	ot := seqNaN(b, c.B, c.H, c.T, c.dv)
	var st api.Tensor
	if form != api.RetentionParallel {
		st = seqNaN(b, c.B, c.H, c.dk, c.dv)
	}
	b.Retention(form, ot, st, retArgs(b, c, in, chunk))
	return seqDown(ot), seqDown(st)
}

func TestRetentionForward(t *testing.T) {
	cases := []retCase{
		{B: 2, H: 3, T: 9, dk: 4, dv: 3},
		{B: 2, H: 2, T: 9, dk: 4, dv: 5, offset: 6, s0: true},
		{B: 1, H: 2, T: 5, dk: 2, dv: 2, s0: true}, // S0 at offset 0 has no effect
		{B: 1, H: 1, T: 1, dk: 3, dv: 1, offset: 1000, s0: true},
		{B: 2, H: 2, T: 0, dk: 2, dv: 3, offset: 4, s0: true},
		// Several column blocks of the recurrent form, the last cut short
		// and not a multiple of 8.
		{B: 1, H: 2, T: 3, dk: 3, dv: 530, offset: 2, s0: true},
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, c := range cases {
			in := retInputs(c, uint64(i))
			want := retRecRef(c, in)
			nO := c.B * c.H * c.T * c.dv
			o, sT := retRun(b, api.RetentionRecurrent, c, in, 0)
			seqCheck(t, c.String()+" recurrent o", o, want[:nO], 1e-5)
			seqCheck(t, c.String()+" recurrent sT", sT, want[nO:], 1e-5)
			// Without sT the recurrent form keeps its state in scratch.
			ot := b.Alloc(api.F32, c.B, c.H, c.T, c.dv)
			b.Retention(api.RetentionRecurrent, ot, nil, retArgs(b, c, in, 0))
			if !seqBits(seqDown(ot), o) {
				t.Errorf("%s: recurrent o without sT differs from o with it", c)
			}
			for _, chunk := range []int{1, 3, 4, 100} {
				o, sT := retRun(b, api.RetentionChunkwise, c, in, chunk)
				seqCheck(t, fmt.Sprintf("%s chunk %d o", c, chunk), o, want[:nO], 1e-5)
				seqCheck(t, fmt.Sprintf("%s chunk %d sT", c, chunk), sT, want[nO:], 1e-5)
			}
		}
	})
}

func TestRetentionParallel(t *testing.T) {
	cases := []retCase{
		{B: 2, H: 3, T: 9, dk: 4, dv: 3},
		{B: 1, H: 2, T: 6, dk: 3, dv: 2, scale: 0.05}, // every row clamped up to 1
		{B: 1, H: 2, T: 20, dk: 4, dv: 2, scale: 200}, // rows clamped down to 5e4
		{B: 1, H: 1, T: 1, dk: 1, dv: 1},
		{B: 2, H: 1, T: 0, dk: 2, dv: 2},
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, c := range cases {
			in := retInputs(c, uint64(30+i))
			want, _ := retParRef(c, in, nil)
			o, _ := retRun(b, api.RetentionParallel, c, in, 0)
			seqCheck(t, c.String(), o, want, 1e-5)
		}
	})
}

// TestRetentionParallelClampRegimes checks that the parallel cases above
// reach both ends of the normaliser's clamp, so that they test it.
func TestRetentionParallelClampRegimes(t *testing.T) {
	var low, high bool
	for _, c := range []retCase{{B: 1, H: 2, T: 6, dk: 3, dv: 2, scale: 0.05}, {B: 1, H: 2, T: 20, dk: 4, dv: 2, scale: 200}} {
		in := retInputs(c, 0)
		_, dens := retParRef(c, in, nil)
		for _, d := range dens {
			low, high = low || d == 1, high || d == 5e4
		}
	}
	if !low || !high {
		t.Errorf("clamp reached at 1: %v, at 5e4: %v; want both", low, high)
	}
}

// TestRetentionChunkwiseRecurrent checks chunkwise == recurrent for chunk
// sizes 1, 3, 16 and T = 1, 7, 64, fresh and continuing from a state.
func TestRetentionChunkwiseRecurrent(t *testing.T) {
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for _, T := range []int{1, 7, 64} {
			for _, s0 := range []bool{false, true} {
				c := retCase{B: 2, H: 3, T: T, dk: 8, dv: 6}
				if s0 {
					c.s0, c.offset = true, 11
				}
				in := retInputs(c, uint64(T))
				oR, sR := retRun(b, api.RetentionRecurrent, c, in, 0)
				for _, chunk := range []int{1, 3, 16} {
					oC, sC := retRun(b, api.RetentionChunkwise, c, in, chunk)
					seqCheck(t, fmt.Sprintf("%s chunk %d o", c, chunk), oC, oR, 1e-5)
					seqCheck(t, fmt.Sprintf("%s chunk %d sT", c, chunk), sC, sR, 1e-5)
				}
			}
		}
	})
}

// TestRetentionContinue checks that running tokens 0..39 and then 40..63
// from the carried state equals one run over 0..63.
func TestRetentionContinue(t *testing.T) {
	const T, cut = 64, 40
	c := retCase{B: 2, H: 2, T: T, dk: 4, dv: 5}
	in := retInputs(c, 50)
	// sub returns the inputs of tokens [lo,hi) with the given state.
	sub := func(lo, hi int, s0 []float64) (retCase, [][]float64) {
		pc := retCase{B: c.B, H: c.H, T: hi - lo, dk: c.dk, dv: c.dv, offset: lo, s0: s0 != nil}
		sl := func(v []float64, w int) []float64 {
			var out []float64
			for bh := range c.B * c.H {
				out = append(out, v[(bh*T+lo)*w:(bh*T+hi)*w]...)
			}
			return out
		}
		return pc, [][]float64{sl(in[0], c.dk), sl(in[1], c.dk), sl(in[2], c.dv), s0}
	}
	b := cpu.New(api.BackendOptions{Threads: 2})
	for _, run := range []struct {
		form  api.RetentionForm
		chunk int
	}{{api.RetentionRecurrent, 0}, {api.RetentionChunkwise, 16}, {api.RetentionChunkwise, 3}} {
		name := fmt.Sprintf("%v chunk %d", run.form, run.chunk)
		oAll, sAll := retRun(b, run.form, c, in, run.chunk)
		c1, in1 := sub(0, cut, nil)
		o1, s1 := retRun(b, run.form, c1, in1, run.chunk)
		c2, in2 := sub(cut, T, s1)
		o2, s2 := retRun(b, run.form, c2, in2, run.chunk)
		var got []float64
		for bh := range c.B * c.H {
			got = append(got, o1[bh*cut*c.dv:(bh+1)*cut*c.dv]...)
			got = append(got, o2[bh*(T-cut)*c.dv:(bh+1)*(T-cut)*c.dv]...)
		}
		seqCheck(t, name+" o", got, oAll, 1e-5)
		seqCheck(t, name+" sT", s2, sAll, 1e-5)
	}
}

// TestRetentionParallelRecurrent checks that the parallel and recurrent
// forms agree after each output row is divided by its RMS (the positive
// per-row scalar the group norm removes).
func TestRetentionParallelRecurrent(t *testing.T) {
	c := retCase{B: 2, H: 3, T: 33, dk: 8, dv: 6}
	in := retInputs(c, 60)
	rms := func(o []float64) []float64 {
		out := make([]float64, len(o))
		for r := range len(o) / c.dv {
			row := o[r*c.dv : (r+1)*c.dv]
			var s float64
			for _, v := range row {
				s += v * v
			}
			s = math.Sqrt(s / float64(c.dv))
			for j, v := range row {
				out[r*c.dv+j] = v / s
			}
		}
		return out
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		oP, _ := retRun(b, api.RetentionParallel, c, in, 0)
		oR, _ := retRun(b, api.RetentionRecurrent, c, in, 0)
		seqCheck(t, "normalised rows", rms(oP), rms(oR), 1e-5)
	})
}

func TestRetentionGrad(t *testing.T) {
	type gradCase struct {
		form  api.RetentionForm
		chunk int
		c     retCase
		dsT   bool
	}
	var cases []gradCase
	for _, c := range []retCase{
		{B: 2, H: 2, T: 7, dk: 3, dv: 2},
		{B: 1, H: 2, T: 7, dk: 2, dv: 3, offset: 5, s0: true},
		{B: 1, H: 1, T: 1, dk: 2, dv: 2, offset: 1, s0: true},
		{B: 1, H: 2, T: 0, dk: 2, dv: 2, offset: 3, s0: true},
	} {
		for _, dsT := range []bool{false, true} {
			cases = append(cases,
				gradCase{api.RetentionRecurrent, 0, c, dsT},
				gradCase{api.RetentionChunkwise, 3, c, dsT},
				gradCase{api.RetentionChunkwise, 16, c, dsT})
		}
	}
	for _, c := range []retCase{
		{B: 2, H: 2, T: 7, dk: 3, dv: 2},
		{B: 1, H: 2, T: 6, dk: 3, dv: 2, scale: 0.05},
		{B: 1, H: 2, T: 20, dk: 4, dv: 2, scale: 200},
	} {
		cases = append(cases, gradCase{api.RetentionParallel, 0, c, false})
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, gc := range cases {
			c := gc.c
			name := fmt.Sprintf("%v chunk %d %s dsT %v", gc.form, gc.chunk, c, gc.dsT)
			in := retInputs(c, uint64(70+i))
			r := rand.New(rand.NewPCG(uint64(i), 8))
			nO, nS := c.B*c.H*c.T*c.dv, c.B*c.H*c.dk*c.dv
			do := seqVals(r, nO, -1, 1)
			var dsT []float64
			var want [][]float64
			which := []int{0, 1, 2}
			if c.s0 {
				which = append(which, 3)
			}
			if gc.form == api.RetentionParallel {
				_, dens := retParRef(c, in, nil)
				f := func(v [][]float64) []float64 { o, _ := retParRef(c, v, dens); return o }
				want = seqFD(f, in, do, which...)
			} else {
				up := append(append([]float64(nil), do...), make([]float64, nS)...)
				if gc.dsT {
					dsT = seqVals(r, nS, -1, 1)
					copy(up[nO:], dsT)
				}
				want = seqFD(func(v [][]float64) []float64 { return retRecRef(c, v) }, in, up, which...)
			}
			g := api.RetentionGrads{
				Q: seqNaN(b, c.B, c.H, c.T, c.dk), K: seqNaN(b, c.B, c.H, c.T, c.dk), V: seqNaN(b, c.B, c.H, c.T, c.dv),
			}
			if c.s0 {
				g.S0 = seqNaN(b, c.B, c.H, c.dk, c.dv)
			}
			b.RetentionGrad(gc.form, g, retArgs(b, c, in, gc.chunk), seqUp(b, do, c.B, c.H, c.T, c.dv), seqUp(b, dsT, c.B, c.H, c.dk, c.dv))
			got := []api.Tensor{g.Q, g.K, g.V, g.S0}
			for _, k := range which {
				seqCheck(t, fmt.Sprintf("%s d%s", name, []string{"Q", "K", "V", "S0"}[k]), seqDown(got[k]), want[k], seqGradTol)
			}
			// One gradient alone equals the same gradient among all.
			alone := api.RetentionGrads{V: seqNaN(b, c.B, c.H, c.T, c.dv)}
			b.RetentionGrad(gc.form, alone, retArgs(b, c, in, gc.chunk), seqUp(b, do, c.B, c.H, c.T, c.dv), seqUp(b, dsT, c.B, c.H, c.dk, c.dv))
			if !seqBits(seqDown(alone.V), seqDown(g.V)) {
				t.Errorf("%s: dV alone differs from dV among all", name)
			}
		}
	})
}

// TestRetentionThreads checks that forward and backward results do not
// depend on the thread count: with more heads than threads (each head on
// one goroutine) and with one head, whose matrix products are then split
// across the threads (the sizes are large enough for the GEMM to split).
func TestRetentionThreads(t *testing.T) {
	for _, tc := range []struct {
		c     retCase
		chunk int
	}{
		{retCase{B: 2, H: 3, T: 20, dk: 4, dv: 6, offset: 3, s0: true}, 6},
		{retCase{B: 1, H: 1, T: 200, dk: 64, dv: 512, offset: 3, s0: true}, 50},
	} {
		c := tc.c
		in := retInputs(c, 90)
		r := rand.New(rand.NewPCG(90, 9))
		do, dsT := seqVals(r, c.B*c.H*c.T*c.dv, -1, 1), seqVals(r, c.B*c.H*c.dk*c.dv, -1, 1)
		// The parallel form starts a sequence: no state, offset 0.
		pc := c
		pc.offset, pc.s0 = 0, false
		pin := append(in[:3:3], nil)
		run := func(threads int) [][]float64 {
			b := cpu.New(api.BackendOptions{Threads: threads})
			var out [][]float64
			for _, form := range []api.RetentionForm{api.RetentionRecurrent, api.RetentionChunkwise, api.RetentionParallel} {
				fc, fin, dsTf := c, in, dsT
				if form == api.RetentionParallel {
					fc, fin, dsTf = pc, pin, nil
				}
				o, sT := retRun(b, form, fc, fin, tc.chunk)
				g := api.RetentionGrads{
					Q: b.Alloc(api.F32, c.B, c.H, c.T, c.dk), K: b.Alloc(api.F32, c.B, c.H, c.T, c.dk),
					V: b.Alloc(api.F32, c.B, c.H, c.T, c.dv),
				}
				if fc.s0 {
					g.S0 = b.Alloc(api.F32, c.B, c.H, c.dk, c.dv)
				}
				b.RetentionGrad(form, g, retArgs(b, fc, fin, tc.chunk), seqUp(b, do, c.B, c.H, c.T, c.dv), seqUp(b, dsTf, c.B, c.H, c.dk, c.dv))
				out = append(out, o, sT, seqDown(g.Q), seqDown(g.K), seqDown(g.V), seqDown(g.S0))
			}
			return out
		}
		one, many := run(1), run(4)
		for i := range one {
			if !seqBits(one[i], many[i]) {
				t.Errorf("%s: output %d differs between 1 and 4 threads", c, i)
			}
		}
	}
}

func TestRetentionMisuse(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	c := retCase{B: 1, H: 2, T: 3, dk: 2, dv: 2, offset: 2, s0: true}
	in := retInputs(c, 1)
	good := func() api.RetentionArgs { return retArgs(b, c, in, 2) }
	o, sT := b.Alloc(api.F32, c.B, c.H, c.T, c.dv), b.Alloc(api.F32, c.B, c.H, c.dk, c.dv)
	for _, m := range []struct {
		what     string
		sentinel error
		fn       func()
	}{
		{"offset without S0", api.ErrOutOfRange, func() { a := good(); a.S0 = nil; b.Retention(api.RetentionChunkwise, o, sT, a) }},
		{"parallel with S0", api.ErrShape, func() { a := good(); a.Offset = 0; b.Retention(api.RetentionParallel, o, nil, a) }},
		{"parallel with offset", api.ErrOutOfRange, func() { a := good(); a.S0 = nil; b.Retention(api.RetentionParallel, o, nil, a) }},
		{"parallel with sT", api.ErrShape, func() {
			a := good()
			a.S0, a.Offset = nil, 0
			b.Retention(api.RetentionParallel, o, sT, a)
		}},
		{"chunk 0", api.ErrOutOfRange, func() { a := good(); a.Chunk = 0; b.Retention(api.RetentionChunkwise, o, sT, a) }},
		{"gamma 1", api.ErrOutOfRange, func() { a := good(); a.Gamma = []float32{0.5, 1}; b.Retention(api.RetentionRecurrent, o, sT, a) }},
		{"one gamma for two heads", api.ErrShape, func() { a := good(); a.Gamma = []float32{0.5}; b.Retention(api.RetentionRecurrent, o, sT, a) }},
		{"form 0", api.ErrUnsupported, func() { b.Retention(0, o, sT, good()) }},
		{"K of dk+1", api.ErrShape, func() {
			a := good()
			a.K = b.Alloc(api.F32, c.B, c.H, c.T, c.dk+1)
			b.Retention(api.RetentionRecurrent, o, sT, a)
		}},
		{"sT of dv+1", api.ErrShape, func() { b.Retention(api.RetentionRecurrent, o, b.Alloc(api.F32, c.B, c.H, c.dk, c.dv+1), good()) }},
		{"dS0 without S0", api.ErrShape, func() {
			a := good()
			a.S0, a.Offset = nil, 0
			b.RetentionGrad(api.RetentionRecurrent, api.RetentionGrads{S0: sT}, a, o, nil)
		}},
		{"dsT for the parallel form", api.ErrShape, func() {
			a := good()
			a.S0, a.Offset = nil, 0
			b.RetentionGrad(api.RetentionParallel, api.RetentionGrads{V: o}, a, o, sT)
		}},
		{"do of T+1", api.ErrShape, func() {
			b.RetentionGrad(api.RetentionRecurrent, api.RetentionGrads{V: o}, good(), b.Alloc(api.F32, c.B, c.H, c.T+1, c.dv), nil)
		}},
	} {
		seqWantPanic(t, m.what, m.sentinel, m.fn)
	}
}
