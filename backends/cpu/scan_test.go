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
	d, h0      bool
}

func (c scanCase) String() string {
	return fmt.Sprintf("B%d_T%d_E%d_N%d_D%v_H0%v", c.B, c.T, c.E, c.N, c.d, c.h0)
}

// scanInputs holds the inputs in the order x, delta, a, bm, cm, d, h0 (d and
// h0 nil when off).
func scanInputs(c scanCase, seed uint64) [][]float64 {
	r := rand.New(rand.NewPCG(seed, 3))
	in := [][]float64{
		seqVals(r, c.B*c.T*c.E, -1, 1),
		seqVals(r, c.B*c.T*c.E, 0.01, 1),
		seqVals(r, c.E*c.N, -2, -0.1),
		seqVals(r, c.B*c.T*c.N, -1, 1),
		seqVals(r, c.B*c.T*c.N, -1, 1),
		nil, nil,
	}
	if c.d {
		in[5] = seqVals(r, c.E, -1, 1)
	}
	if c.h0 {
		in[6] = seqVals(r, c.B*c.E*c.N, -1, 1)
	}
	return in
}

// scanRef is the float64 reference; it returns y [B,T,E] followed by the
// final state [B,E,N].
func scanRef(c scanCase, in [][]float64) []float64 {
	x, delta, a, bm, cm, d, h0 := in[0], in[1], in[2], in[3], in[4], in[5], in[6]
	y := make([]float64, c.B*c.T*c.E)
	hT := make([]float64, c.B*c.E*c.N)
	for b := range c.B {
		for e := range c.E {
			h := make([]float64, c.N)
			if h0 != nil {
				copy(h, h0[(b*c.E+e)*c.N:])
			}
			for t := range c.T {
				row := b*c.T + t
				dt, xv := delta[row*c.E+e], x[row*c.E+e]
				var s float64
				for n := range c.N {
					h[n] = math.Exp(dt*a[e*c.N+n])*h[n] + dt*bm[row*c.N+n]*xv
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
	return append(y, hT...)
}

func scanArgs(b api.Backend, c scanCase, in [][]float64) api.ScanArgs {
	return api.ScanArgs{
		X: seqUp(b, in[0], c.B, c.T, c.E), Delta: seqUp(b, in[1], c.B, c.T, c.E), A: seqUp(b, in[2], c.E, c.N),
		Bm: seqUp(b, in[3], c.B, c.T, c.N), Cm: seqUp(b, in[4], c.B, c.T, c.N),
		D: seqUp(b, in[5], c.E), H0: seqUp(b, in[6], c.B, c.E, c.N),
	}
}

func TestSelectiveScan(t *testing.T) {
	cases := []scanCase{
		{B: 2, T: 9, E: 5, N: 4, d: true, h0: true},
		{B: 2, T: 9, E: 5, N: 4},
		{B: 1, T: 1, E: 3, N: 1, h0: true},
		{B: 2, T: 0, E: 3, N: 2, h0: true},
		{B: 3, T: 17, E: 70, N: 16, d: true, h0: true}, // several channel blocks
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, c := range cases {
			in := scanInputs(c, uint64(i))
			want := scanRef(c, in)
			nY := c.B * c.T * c.E
			y, hT := seqNaN(b, c.B, c.T, c.E), seqNaN(b, c.B, c.E, c.N)
			b.SelectiveScan(y, hT, scanArgs(b, c, in))
			seqCheck(t, c.String()+" y", seqDown(y), want[:nY], 1e-5)
			seqCheck(t, c.String()+" hT", seqDown(hT), want[nY:], 1e-5)
			y2 := seqNaN(b, c.B, c.T, c.E)
			b.SelectiveScan(y2, nil, scanArgs(b, c, in))
			if !seqBits(seqDown(y2), seqDown(y)) {
				t.Errorf("%s: y without hT differs from y with it", c)
			}
		}
	})
}

// TestSelectiveScanContinue checks that scanning tokens [0,t) and then
// [t,T) from the carried state equals one scan over [0,T).
func TestSelectiveScanContinue(t *testing.T) {
	c := scanCase{B: 2, T: 12, E: 6, N: 3, d: true}
	in := scanInputs(c, 40)
	b := cpu.New(api.BackendOptions{Threads: 1})
	whole, hWhole := b.Alloc(api.F32, c.B, c.T, c.E), b.Alloc(api.F32, c.B, c.E, c.N)
	b.SelectiveScan(whole, hWhole, scanArgs(b, c, in))
	const cut = 5
	part := func(lo, hi int, h0 []float64) ([]float64, []float64) {
		pc := scanCase{B: c.B, T: hi - lo, E: c.E, N: c.N, d: true, h0: h0 != nil}
		sl := func(v []float64, w int) []float64 {
			var out []float64
			for bi := range c.B {
				out = append(out, v[(bi*c.T+lo)*w:(bi*c.T+hi)*w]...)
			}
			return out
		}
		pin := [][]float64{sl(in[0], c.E), sl(in[1], c.E), in[2], sl(in[3], c.N), sl(in[4], c.N), in[5], h0}
		y, hT := b.Alloc(api.F32, c.B, hi-lo, c.E), b.Alloc(api.F32, c.B, c.E, c.N)
		b.SelectiveScan(y, hT, scanArgs(b, pc, pin))
		return seqDown(y), seqDown(hT)
	}
	y1, h1 := part(0, cut, nil)
	y2, h2 := part(cut, c.T, h1)
	w := seqDown(whole)
	for bi := range c.B {
		got := append(append([]float64(nil), y1[bi*cut*c.E:(bi+1)*cut*c.E]...), y2[bi*(c.T-cut)*c.E:(bi+1)*(c.T-cut)*c.E]...)
		seqCheck(t, fmt.Sprintf("y row %d", bi), got, w[bi*c.T*c.E:(bi+1)*c.T*c.E], 1e-6)
	}
	seqCheck(t, "hT", h2, seqDown(hWhole), 1e-6)
}

func TestSelectiveScanGrad(t *testing.T) {
	cases := []scanCase{
		{B: 2, T: 6, E: 5, N: 4, d: true, h0: true},
		{B: 2, T: 6, E: 5, N: 4},
		{B: 1, T: 1, E: 2, N: 3, d: true},
		{B: 2, T: 0, E: 3, N: 2, h0: true},
		{B: 2, T: 5, E: 35, N: 2, d: true, h0: true}, // two channel blocks
	}
	seqEach(t, func(t *testing.T, b *cpu.Backend) {
		for i, c := range cases {
			for _, withDhT := range []bool{false, true} {
				name := fmt.Sprintf("%s_dhT%v", c, withDhT)
				in := scanInputs(c, uint64(20+i))
				r := rand.New(rand.NewPCG(uint64(i), 4))
				nY, nH := c.B*c.T*c.E, c.B*c.E*c.N
				dy := seqVals(r, nY, -1, 1)
				dhT := seqVals(r, nH, -1, 1)
				up := append(append([]float64(nil), dy...), dhT...)
				if !withDhT {
					dhT = nil
					clear(up[nY:])
				}
				which := []int{0, 1, 2, 3, 4}
				if c.d {
					which = append(which, 5)
				}
				if c.h0 {
					which = append(which, 6)
				}
				want := seqFD(func(v [][]float64) []float64 { return scanRef(c, v) }, in, up, which...)
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
				b.SelectiveScanGrad(g, scanArgs(b, c, in), seqUp(b, dy, c.B, c.T, c.E), seqUp(b, dhT, c.B, c.E, c.N))
				got := []api.Tensor{g.X, g.Delta, g.A, g.Bm, g.Cm, g.D, g.H0}
				for _, k := range which {
					seqCheck(t, fmt.Sprintf("%s %s", name, scanNames[k]), seqDown(got[k]), want[k], seqGradTol)
				}
				// One gradient alone equals the same gradient among all.
				alone := api.ScanGrads{Cm: seqNaN(b, c.B, c.T, c.N)}
				b.SelectiveScanGrad(alone, scanArgs(b, c, in), seqUp(b, dy, c.B, c.T, c.E), seqUp(b, dhT, c.B, c.E, c.N))
				if !seqBits(seqDown(alone.Cm), seqDown(g.Cm)) {
					t.Errorf("%s: dCm alone differs from dCm among all", name)
				}
			}
		}
	})
}

var scanNames = []string{"dX", "dDelta", "dA", "dBm", "dCm", "dD", "dH0"}

// TestSelectiveScanThreads checks that forward and backward results do not
// depend on the thread count.
func TestSelectiveScanThreads(t *testing.T) {
	c := scanCase{B: 3, T: 11, E: 100, N: 5, d: true, h0: true}
	in := scanInputs(c, 77)
	r := rand.New(rand.NewPCG(77, 5))
	dy, dhT := seqVals(r, c.B*c.T*c.E, -1, 1), seqVals(r, c.B*c.E*c.N, -1, 1)
	run := func(threads int) [][]float64 {
		b := cpu.New(api.BackendOptions{Threads: threads})
		y, hT := b.Alloc(api.F32, c.B, c.T, c.E), b.Alloc(api.F32, c.B, c.E, c.N)
		b.SelectiveScan(y, hT, scanArgs(b, c, in))
		g := api.ScanGrads{
			X: b.Alloc(api.F32, c.B, c.T, c.E), Delta: b.Alloc(api.F32, c.B, c.T, c.E), A: b.Alloc(api.F32, c.E, c.N),
			Bm: b.Alloc(api.F32, c.B, c.T, c.N), Cm: b.Alloc(api.F32, c.B, c.T, c.N), D: b.Alloc(api.F32, c.E),
			H0: b.Alloc(api.F32, c.B, c.E, c.N),
		}
		b.SelectiveScanGrad(g, scanArgs(b, c, in), seqUp(b, dy, c.B, c.T, c.E), seqUp(b, dhT, c.B, c.E, c.N))
		out := [][]float64{seqDown(y), seqDown(hT)}
		for _, t := range []api.Tensor{g.X, g.Delta, g.A, g.Bm, g.Cm, g.D, g.H0} {
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
		b.SelectiveScanGrad(api.ScanGrads{D: b.Alloc(api.F32, c.E)}, in, y, nil)
	})
	seqWantPanic(t, "dH0 without H0", api.ErrShape, func() {
		b.SelectiveScanGrad(api.ScanGrads{H0: b.Alloc(api.F32, c.B, c.E, c.N)}, in, y, nil)
	})
	seqWantPanic(t, "A of rank 1", api.ErrShape, func() {
		bad := in
		bad.A = b.Alloc(api.F32, c.E*c.N)
		b.SelectiveScan(y, nil, bad)
	})
	seqWantPanic(t, "Bm of N+1", api.ErrShape, func() {
		bad := in
		bad.Bm = b.Alloc(api.F32, c.B, c.T, c.N+1)
		b.SelectiveScan(y, nil, bad)
	})
}
