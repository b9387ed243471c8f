package cpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

type scanCase struct {
	B, T, E, N int
	d, h0, inj bool
}

func (c scanCase) String() string {
	return fmt.Sprintf("B%d_T%d_E%d_N%d_D%v_H0%v_Inj%v", c.B, c.T, c.E, c.N, c.d, c.h0, c.inj)
}

// Sizes of the scan's outputs: y [B,T,E], hT [B,E,N] and hs [B,T,E,N].
func (c scanCase) nY() int  { return c.B * c.T * c.E }
func (c scanCase) nH() int  { return c.B * c.E * c.N }
func (c scanCase) nHs() int { return c.B * c.T * c.E * c.N }

// scanInputs holds the inputs in the order x, delta, a, bm, cm, d, h0, inject
// (d, h0 and inject nil when off).
func scanInputs(c scanCase, seed uint64) [][]float64 {
	r := rand.New(rand.NewPCG(seed, 3))
	in := [][]float64{
		seqVals(r, c.nY(), -1, 1),
		seqVals(r, c.nY(), 0.01, 1),
		seqVals(r, c.E*c.N, -2, -0.1),
		seqVals(r, c.B*c.T*c.N, -1, 1),
		seqVals(r, c.B*c.T*c.N, -1, 1),
		nil, nil, nil,
	}
	if c.d {
		in[5] = seqVals(r, c.E, -1, 1)
	}
	if c.h0 {
		in[6] = seqVals(r, c.nH(), -1, 1)
	}
	if c.inj {
		in[7] = seqVals(r, c.nHs(), -0.5, 0.5)
	}
	return in
}

// scanRef is the float64 reference; it returns y [B,T,E], the final carried
// state [B,E,N] and the pre-injection states hs [B,T,E,N], concatenated.
func scanRef(c scanCase, in [][]float64) []float64 {
	x, delta, a, bm, cm, d, h0, inj := in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7]
	y := make([]float64, c.nY())
	hT := make([]float64, c.nH())
	hs := make([]float64, c.nHs())
	for b := range c.B {
		for e := range c.E {
			h := make([]float64, c.N)
			if h0 != nil {
				copy(h, h0[(b*c.E+e)*c.N:])
			}
			for t := range c.T {
				row := b*c.T + t
				at := (row*c.E + e) * c.N
				dt, xv := delta[row*c.E+e], x[row*c.E+e]
				var s float64
				for n := range c.N {
					h[n] = math.Exp(dt*a[e*c.N+n])*h[n] + dt*bm[row*c.N+n]*xv
					hs[at+n] = h[n]
					if inj != nil {
						h[n] += inj[at+n]
					}
					s += h[n] * cm[row*c.N+n]
				}
				if d != nil {
					s += d[e] * xv
				}
				y[row*c.E+e] = s
			}
			copy(hT[(b*c.E+e)*c.N:], h)
		}
	}
	return append(append(y, hT...), hs...)
}

func scanArgs(b api.Backend, c scanCase, in [][]float64) api.ScanArgs {
	return api.ScanArgs{
		X: seqUp(b, in[0], c.B, c.T, c.E), Delta: seqUp(b, in[1], c.B, c.T, c.E), A: seqUp(b, in[2], c.E, c.N),
		Bm: seqUp(b, in[3], c.B, c.T, c.N), Cm: seqUp(b, in[4], c.B, c.T, c.N),
		D: seqUp(b, in[5], c.E), H0: seqUp(b, in[6], c.B, c.E, c.N), Inject: seqUp(b, in[7], c.B, c.T, c.E, c.N),
	}
}

func TestSelectiveScan(t *testing.T) {
	cases := []scanCase{
		{B: 2, T: 9, E: 5, N: 4, d: true, h0: true},
		{B: 2, T: 9, E: 5, N: 4},
		{B: 2, T: 9, E: 5, N: 4, d: true, h0: true, inj: true},
		{B: 1, T: 1, E: 3, N: 1, h0: true},
		{B: 1, T: 1, E: 3, N: 2, inj: true},
		{B: 2, T: 0, E: 3, N: 2, h0: true, inj: true},
		{B: 3, T: 17, E: 70, N: 16, d: true, h0: true},            // several channel blocks
		{B: 3, T: 17, E: 70, N: 16, d: true, h0: true, inj: true}, // several channel blocks
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, c := range cases {
			in := scanInputs(c, uint64(i))
			want := scanRef(c, in)
			nY, nH := c.nY(), c.nH()
			y, hT, hs := seqNaN(b, c.B, c.T, c.E), seqNaN(b, c.B, c.E, c.N), seqNaN(b, c.B, c.T, c.E, c.N)
			b.SelectiveScan(y, hT, hs, scanArgs(b, c, in))
			seqCheck(t, c.String()+" y", seqDown(y), want[:nY], 1e-5)
			seqCheck(t, c.String()+" hT", seqDown(hT), want[nY:nY+nH], 1e-5)
			seqCheck(t, c.String()+" hs", seqDown(hs), want[nY+nH:], 1e-5)
			y2 := seqNaN(b, c.B, c.T, c.E)
			b.SelectiveScan(y2, nil, nil, scanArgs(b, c, in))
			if !seqBits(seqDown(y2), seqDown(y)) {
				t.Errorf("%s: y without hT and hs differs from y with them", c)
			}
		}
	})
}

// TestSelectiveScanInjectZero checks that a zero Inject gives the same bits
// as no Inject, and that without Inject the states hs end in hT.
func TestSelectiveScanInjectZero(t *testing.T) {
	c := scanCase{B: 2, T: 7, E: 40, N: 3, d: true, h0: true}
	in := scanInputs(c, 90)
	b := cpu.New(api.BackendOptions{Threads: 2})
	run := func(inj []float64) (y, hT, hs []float64) {
		args := scanArgs(b, c, in)
		args.Inject = seqUp(b, inj, c.B, c.T, c.E, c.N)
		yt, ht, hst := b.Alloc(api.F32, c.B, c.T, c.E), b.Alloc(api.F32, c.B, c.E, c.N), b.Alloc(api.F32, c.B, c.T, c.E, c.N)
		b.SelectiveScan(yt, ht, hst, args)
		return seqDown(yt), seqDown(ht), seqDown(hst)
	}
	y0, h0, hs0 := run(nil)
	y1, h1, hs1 := run(make([]float64, c.nHs()))
	if !seqBits(y0, y1) || !seqBits(h0, h1) || !seqBits(hs0, hs1) {
		t.Error("a zero Inject changes the results")
	}
	for bi := range c.B {
		last := (bi*c.T + c.T - 1) * c.E * c.N
		if !seqBits(hs0[last:last+c.E*c.N], h0[bi*c.E*c.N:(bi+1)*c.E*c.N]) {
			t.Errorf("row %d: the last of hs is not hT", bi)
		}
	}
}

// TestSelectiveScanContinue checks that scanning tokens [0,t) and then
// [t,T) from the carried state equals one scan over [0,T).
func TestSelectiveScanContinue(t *testing.T) {
	for _, inj := range []bool{false, true} {
		c := scanCase{B: 2, T: 12, E: 6, N: 3, d: true, inj: inj}
		in := scanInputs(c, 40)
		b := cpu.New(api.BackendOptions{Threads: 1})
		whole, hWhole := b.Alloc(api.F32, c.B, c.T, c.E), b.Alloc(api.F32, c.B, c.E, c.N)
		b.SelectiveScan(whole, hWhole, nil, scanArgs(b, c, in))
		const cut = 5
		part := func(lo, hi int, h0 []float64) ([]float64, []float64) {
			pc := scanCase{B: c.B, T: hi - lo, E: c.E, N: c.N, d: true, h0: h0 != nil, inj: inj}
			sl := func(v []float64, w int) []float64 {
				if v == nil {
					return nil
				}
				var out []float64
				for bi := range c.B {
					out = append(out, v[(bi*c.T+lo)*w:(bi*c.T+hi)*w]...)
				}
				return out
			}
			pin := [][]float64{sl(in[0], c.E), sl(in[1], c.E), in[2], sl(in[3], c.N), sl(in[4], c.N), in[5], h0,
				sl(in[7], c.E*c.N)}
			y, hT := b.Alloc(api.F32, c.B, hi-lo, c.E), b.Alloc(api.F32, c.B, c.E, c.N)
			b.SelectiveScan(y, hT, nil, scanArgs(b, pc, pin))
			return seqDown(y), seqDown(hT)
		}
		y1, h1 := part(0, cut, nil)
		y2, h2 := part(cut, c.T, h1)
		w := seqDown(whole)
		for bi := range c.B {
			got := append(append([]float64(nil), y1[bi*cut*c.E:(bi+1)*cut*c.E]...), y2[bi*(c.T-cut)*c.E:(bi+1)*(c.T-cut)*c.E]...)
			seqCheck(t, fmt.Sprintf("%s y row %d", c, bi), got, w[bi*c.T*c.E:(bi+1)*c.T*c.E], 1e-6)
		}
		seqCheck(t, c.String()+" hT", h2, seqDown(hWhole), 1e-6)
	}
}

// scanGradsFor returns NaN-filled gradient outputs for every input of c.
func scanGradsFor(b api.Backend, c scanCase) api.ScanGrads {
	g := api.ScanGrads{
		X: seqNaN(b, c.B, c.T, c.E), Delta: seqNaN(b, c.B, c.T, c.E), A: seqNaN(b, c.E, c.N),
		Bm: seqNaN(b, c.B, c.T, c.N), Cm: seqNaN(b, c.B, c.T, c.N),
	}
	if c.d {
		g.D = seqNaN(b, c.E)
	}
	if c.h0 {
		g.H0 = seqNaN(b, c.B, c.E, c.N)
	}
	if c.inj {
		g.Inject = seqNaN(b, c.B, c.T, c.E, c.N)
	}
	return g
}

// scanGradList returns the gradient outputs in scanInputs order.
func scanGradList(g api.ScanGrads) []api.Tensor {
	return []api.Tensor{g.X, g.Delta, g.A, g.Bm, g.Cm, g.D, g.H0, g.Inject}
}

func TestSelectiveScanGrad(t *testing.T) {
	cases := []scanCase{
		{B: 2, T: 6, E: 5, N: 4, d: true, h0: true},
		{B: 2, T: 6, E: 5, N: 4},
		{B: 2, T: 6, E: 5, N: 4, d: true, h0: true, inj: true},
		{B: 1, T: 1, E: 2, N: 3, d: true},
		{B: 1, T: 1, E: 2, N: 3, inj: true},
		{B: 2, T: 0, E: 3, N: 2, h0: true, inj: true},
		{B: 2, T: 5, E: 35, N: 2, d: true, h0: true},            // two channel blocks
		{B: 2, T: 5, E: 35, N: 2, d: true, h0: true, inj: true}, // two channel blocks
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, c := range cases {
			for _, up := range []struct{ dhT, dhs bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
				name := fmt.Sprintf("%s_dhT%v_dhs%v", c, up.dhT, up.dhs)
				in := scanInputs(c, uint64(20+i))
				r := rand.New(rand.NewPCG(uint64(i), 4))
				dy := seqVals(r, c.nY(), -1, 1)
				dhT := seqVals(r, c.nH(), -1, 1)
				dhs := seqVals(r, c.nHs(), -1, 1)
				// The functional's weights on y, hT and hs; zero where the
				// kernel is given no gradient.
				w := make([]float64, 0, c.nY()+c.nH()+c.nHs())
				w = append(w, dy...)
				if up.dhT {
					w = append(w, dhT...)
				} else {
					w = append(w, make([]float64, c.nH())...)
					dhT = nil
				}
				if up.dhs {
					w = append(w, dhs...)
				} else {
					w = append(w, make([]float64, c.nHs())...)
					dhs = nil
				}
				which := []int{0, 1, 2, 3, 4}
				if c.d {
					which = append(which, 5)
				}
				if c.h0 {
					which = append(which, 6)
				}
				if c.inj {
					which = append(which, 7)
				}
				want := seqFD(func(v [][]float64) []float64 { return scanRef(c, v) }, in, w, which...)
				g := scanGradsFor(b, c)
				args := scanArgs(b, c, in)
				dyT, dhTT, dhsT := seqUp(b, dy, c.B, c.T, c.E), seqUp(b, dhT, c.B, c.E, c.N), seqUp(b, dhs, c.B, c.T, c.E, c.N)
				b.SelectiveScanGrad(g, args, dyT, dhTT, dhsT)
				got := scanGradList(g)
				for _, k := range which {
					seqCheck(t, fmt.Sprintf("%s %s", name, scanNames[k]), seqDown(got[k]), want[k], seqGradTol)
				}
				// One gradient alone equals the same gradient among all.
				alone := api.ScanGrads{Cm: seqNaN(b, c.B, c.T, c.N)}
				if c.inj {
					alone.Inject = seqNaN(b, c.B, c.T, c.E, c.N)
				}
				b.SelectiveScanGrad(alone, args, dyT, dhTT, dhsT)
				if !seqBits(seqDown(alone.Cm), seqDown(g.Cm)) || !seqBits(seqDown(alone.Inject), seqDown(g.Inject)) {
					t.Errorf("%s: dCm or dInject alone differs from the same among all", name)
				}
			}
		}
	})
}

var scanNames = []string{"dX", "dDelta", "dA", "dBm", "dCm", "dD", "dH0", "dInject"}

// TestSelectiveScanThreads checks that forward and backward results do not
// depend on the thread count.
func TestSelectiveScanThreads(t *testing.T) {
	c := scanCase{B: 3, T: 11, E: 100, N: 5, d: true, h0: true, inj: true}
	in := scanInputs(c, 77)
	r := rand.New(rand.NewPCG(77, 5))
	dy, dhT, dhs := seqVals(r, c.nY(), -1, 1), seqVals(r, c.nH(), -1, 1), seqVals(r, c.nHs(), -1, 1)
	run := func(threads int) [][]float64 {
		b := cpu.New(api.BackendOptions{Threads: threads})
		y, hT, hs := b.Alloc(api.F32, c.B, c.T, c.E), b.Alloc(api.F32, c.B, c.E, c.N), b.Alloc(api.F32, c.B, c.T, c.E, c.N)
		b.SelectiveScan(y, hT, hs, scanArgs(b, c, in))
		g := scanGradsFor(b, c)
		b.SelectiveScanGrad(g, scanArgs(b, c, in), seqUp(b, dy, c.B, c.T, c.E), seqUp(b, dhT, c.B, c.E, c.N),
			seqUp(b, dhs, c.B, c.T, c.E, c.N))
		out := [][]float64{seqDown(y), seqDown(hT), seqDown(hs)}
		for _, t := range scanGradList(g) {
			out = append(out, seqDown(t))
		}
		return out
	}
	one, many := run(1), run(4)
	for i := range one {
		if !seqBits(one[i], many[i]) {
			t.Errorf("output %d differs between 1 and 4 threads", i)
		}
	}
}

func TestSelectiveScanMisuse(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	c := scanCase{B: 2, T: 3, E: 4, N: 2}
	in := scanArgs(b, c, scanInputs(c, 1))
	y := b.Alloc(api.F32, c.B, c.T, c.E)
	seqWantPanic(t, "dD without D", api.ErrShape, func() {
		b.SelectiveScanGrad(api.ScanGrads{D: b.Alloc(api.F32, c.E)}, in, y, nil, nil)
	})
	seqWantPanic(t, "dH0 without H0", api.ErrShape, func() {
		b.SelectiveScanGrad(api.ScanGrads{H0: b.Alloc(api.F32, c.B, c.E, c.N)}, in, y, nil, nil)
	})
	seqWantPanic(t, "dInject without Inject", api.ErrShape, func() {
		b.SelectiveScanGrad(api.ScanGrads{Inject: b.Alloc(api.F32, c.B, c.T, c.E, c.N)}, in, y, nil, nil)
	})
	seqWantPanic(t, "A of rank 1", api.ErrShape, func() {
		bad := in
		bad.A = b.Alloc(api.F32, c.E*c.N)
		b.SelectiveScan(y, nil, nil, bad)
	})
	seqWantPanic(t, "Bm of N+1", api.ErrShape, func() {
		bad := in
		bad.Bm = b.Alloc(api.F32, c.B, c.T, c.N+1)
		b.SelectiveScan(y, nil, nil, bad)
	})
	seqWantPanic(t, "Inject of [B,T,N,E]", api.ErrShape, func() {
		bad := in
		bad.Inject = b.Alloc(api.F32, c.B, c.T, c.N, c.E)
		b.SelectiveScan(y, nil, nil, bad)
	})
	seqWantPanic(t, "hs of [B,E,N]", api.ErrShape, func() {
		b.SelectiveScan(y, nil, b.Alloc(api.F32, c.B, c.E, c.N), in)
	})
	seqWantPanic(t, "dhs of T+1 steps", api.ErrShape, func() {
		b.SelectiveScanGrad(api.ScanGrads{X: b.Alloc(api.F32, c.B, c.T, c.E)}, in, y, nil,
			b.Alloc(api.F32, c.B, c.T+1, c.E, c.N))
	})
	seqWantPanic(t, "dInject of [B,T,E]", api.ErrShape, func() {
		bad := in
		bad.Inject = b.Alloc(api.F32, c.B, c.T, c.E, c.N)
		b.SelectiveScanGrad(api.ScanGrads{Inject: b.Alloc(api.F32, c.B, c.T, c.E)}, bad, y, nil, nil)
	})
}

// BenchmarkSelectiveScan measures the forward and backward scan at the
// shape of one mamba-130m layer over a 512-token prefill (B=1, T=512,
// E=1536, N=16) on one thread, reporting nanoseconds per (token, channel,
// state) element.
func BenchmarkSelectiveScan(b *testing.B) {
	c := scanCase{B: 1, T: 512, E: 1536, N: 16, d: true}
	in := scanInputs(c, 5)
	be := cpu.New(api.BackendOptions{Threads: 1})
	args := scanArgs(be, c, in)
	y := be.Alloc(api.F32, c.B, c.T, c.E)
	perElement := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(c.nHs()), "ns/elem")
	}
	b.Run("forward", func(b *testing.B) {
		for b.Loop() {
			be.SelectiveScan(y, nil, nil, args)
		}
		perElement(b)
	})
	b.Run("backward", func(b *testing.B) {
		g := scanGradsFor(be, c)
		dy := seqUp(be, seqVals(rand.New(rand.NewPCG(5, 6)), c.nY(), -1, 1), c.B, c.T, c.E)
		for b.Loop() {
			be.SelectiveScanGrad(g, args, dy, nil, nil)
		}
		perElement(b)
	})
}
