//go:build amd64 && !purego

package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
)

// scanBackTol bounds the difference between the AVX2 backward step and
// scanBackGeneric, relative to the sum of the absolute values of the terms
// of each result (which bounds every partial sum): fused multiply-adds and
// the kernel's order of summation change only the rounding of float64
// sums, a few units of 2^-53 per step.
const scanBackTol = 1e-12

// scanBackCase is one step operand set of scanBackStep with its slices cut
// from longer ones whose tails hold NaN, to catch writes past the end.
type scanBackCase struct {
	st     scanBackStep
	bufs   [][]float64 // the float64 outputs, full length
	bufs32 [][]float32 // the float32 outputs, full length
}

const scanBackPad = 8 // NaN floats after each slice

// newScanBackCase returns the operands of nch channels of n states with
// random inputs (absolute values when abs), the carried dh, dA and dD set
// to random values too; d is nil unless withD, and the float32 outputs
// nil unless outs.
func newScanBackCase(r *rand.Rand, nch, n int, withD, outs, abs bool) *scanBackCase {
	f32 := func(k int, lo, hi float64) []float32 {
		v := make([]float32, k+scanBackPad)
		for i := range v {
			v[i] = float32(lo + (hi-lo)*r.Float64())
			if abs {
				v[i] = float32(math.Abs(float64(v[i])))
			}
		}
		return v[:k]
	}
	c := &scanBackCase{}
	f64 := func(k int) []float64 {
		v := make([]float64, k+scanBackPad)
		for i := range v {
			v[i] = math.NaN()
		}
		c.bufs = append(c.bufs, v)
		return v[:k]
	}
	m := nch * n
	c.st = scanBackStep{
		n: n, hprev: f32(m, -2, 2), hcur: f32(m, -2, 2), decay: f32(m, 0, 1), a: f32(m, -3, -0.1),
		br: f32(n, -1, 1), cr: f32(n, -1, 1), dt: f32(nch, 0.01, 1), x: f32(nch, -1, 1), dy: f32(nch, -1, 1),
		dh: f64(m), dA: f64(m), dD: f64(nch), dB: f64(n), dC: f64(n), dx: f64(nch), dd: f64(nch), bc: f64(2 * n),
	}
	if withD {
		c.st.d = f32(nch, -1, 1)
	}
	if outs {
		for _, o := range []*[]float32{&c.st.outX, &c.st.outDelta, &c.st.outB, &c.st.outC} {
			k := nch
			if o == &c.st.outB || o == &c.st.outC {
				k = n
			}
			v := make([]float32, k+scanBackPad)
			for i := range v {
				v[i] = float32(math.NaN())
			}
			c.bufs32 = append(c.bufs32, v)
			*o = v[:k]
		}
	}
	for _, v := range [][]float64{c.st.dh, c.st.dA, c.st.dD} {
		for i := range v {
			v[i] = 2*r.Float64() - 1
			if abs {
				v[i] = math.Abs(v[i])
			}
		}
	}
	return c
}

// clone returns a copy of c with its own outputs.
func (c *scanBackCase) clone() *scanBackCase {
	d := &scanBackCase{st: c.st}
	cp := func(v []float64) []float64 {
		full := append([]float64(nil), v[:len(v)+scanBackPad]...)
		d.bufs = append(d.bufs, full)
		return full[:len(v)]
	}
	cp32 := func(v []float32) []float32 {
		if v == nil {
			return nil
		}
		full := append([]float32(nil), v[:len(v)+scanBackPad]...)
		d.bufs32 = append(d.bufs32, full)
		return full[:len(v)]
	}
	st := &d.st
	st.dh, st.dA, st.dD, st.dB, st.dC = cp(st.dh), cp(st.dA), cp(st.dD), cp(st.dB), cp(st.dC)
	st.dx, st.dd, st.bc = cp(st.dx), cp(st.dd), cp(st.bc)
	st.outX, st.outDelta, st.outB, st.outC = cp32(st.outX), cp32(st.outDelta), cp32(st.outB), cp32(st.outC)
	return d
}

// checkOuts fails t unless the float32 outputs of c are its float64
// results rounded, and nothing was written past the end of an output.
func (c *scanBackCase) checkOuts(t *testing.T, what string) {
	t.Helper()
	st := &c.st
	for _, p := range []struct {
		o []float32
		v []float64
	}{{st.outX, st.dx}, {st.outDelta, st.dd}, {st.outB, st.dB}, {st.outC, st.dC}} {
		for i, o := range p.o {
			if math.Float32bits(o) != math.Float32bits(float32(p.v[i])) {
				t.Fatalf("%s: float32 output %d is %v, want %v", what, i, o, float32(p.v[i]))
			}
		}
	}
	for _, v := range c.bufs {
		for i, x := range v[len(v)-scanBackPad:] {
			if !math.IsNaN(x) {
				t.Fatalf("%s: %v written past the end of an output (%d after it)", what, x, i)
			}
		}
	}
	for _, v := range c.bufs32 {
		for i, x := range v[len(v)-scanBackPad:] {
			if !math.IsNaN(float64(x)) {
				t.Fatalf("%s: %v written past the end of a float32 output (%d after it)", what, x, i)
			}
		}
	}
}

// results returns the float64 results of the step, named.
func (c *scanBackCase) results() map[string][]float64 {
	st := &c.st
	res := map[string][]float64{"dh": st.dh, "dA": st.dA, "dB": st.dB, "dC": st.dC, "dx": st.dx, "dd": st.dd}
	if st.d != nil {
		res["dD"] = st.dD
	}
	return res
}

// TestScanBackAVX2 checks the AVX2 backward step against scanBackGeneric
// over three chained steps (dh, dA and dD carried), for several channel
// counts and state sizes, within scanBackTol of the magnitude of each
// result's terms (the generic step run on the absolute values of the
// inputs), that both set the float32 outputs to their float64 results
// rounded, and that they write nothing past the ends of their outputs.
func TestScanBackAVX2(t *testing.T) {
	if !scanBackHasAVX2 {
		t.Skip("no AVX2 and FMA")
	}
	for _, n := range []int{4, 8, 16, 20} {
		for _, nch := range []int{1, 5, scanBlock} {
			for _, withD := range []bool{false, true} {
				name := fmt.Sprintf("n%d_nch%d_D%v", n, nch, withD)
				seed := uint64(n*1000 + nch*10)
				if withD {
					seed++
				}
				r := rand.New(rand.NewPCG(seed, 11))
				ra := rand.New(rand.NewPCG(seed, 11))
				outs := nch != 5
				fast := newScanBackCase(r, nch, n, withD, outs, false)
				mag := newScanBackCase(ra, nch, n, withD, outs, true)
				gen := fast.clone()
				for step := range 3 {
					if step > 0 { // new inputs, same carried sums
						fs, ms := &fast.st, &mag.st
						for k, v := range [][]float32{fs.hprev, fs.hcur, fs.br, fs.cr, fs.dy} {
							abs := [][]float32{ms.hprev, ms.hcur, ms.br, ms.cr, ms.dy}[k]
							for i := range v {
								v[i] = float32(2*r.Float64() - 1)
								abs[i] = float32(math.Abs(float64(v[i])))
							}
						}
					}
					if !scanBackFast(&fast.st) {
						t.Fatalf("%s: the AVX2 step did not run", name)
					}
					scanBackGeneric(&gen.st)
					scanBackGeneric(&mag.st)
					want, scale := gen.results(), mag.results()
					for what, got := range fast.results() {
						for i, g := range got {
							w := want[what][i]
							if d := math.Abs(g - w); !(d <= scanBackTol*scale[what][i]) {
								t.Fatalf("%s step %d: %s[%d] = %v, want %v (difference %.3g, terms %.3g)",
									name, step, what, i, g, w, d, scale[what][i])
							}
						}
					}
				}
				fast.checkOuts(t, name+" AVX2")
				gen.checkOuts(t, name+" generic")
			}
		}
	}
}

// TestSelectiveScanGradAVX2 checks SelectiveScanGrad with the AVX2
// backward step against the same with scanBackGeneric: within 1e-6 of each
// gradient's largest value where the kernel runs (N a multiple of 4; a
// float32 rounding of float64 sums that differ in their last bits, carried
// through T steps), and the same bits where it does not (N = 3, 17).
func TestSelectiveScanGradAVX2(t *testing.T) {
	if !scanBackHasAVX2 {
		t.Skip("no AVX2 and FMA")
	}
	defer func(v bool) { scanBackHasAVX2 = v }(scanBackHasAVX2)
	b := New(api.BackendOptions{Threads: 2})
	for i, c := range []struct {
		B, T, E, N int
		d, h0, dhT bool
	}{
		{2, 9, 45, 16, true, true, true},
		{1, 7, 70, 16, false, false, false},
		{2, 5, 13, 4, true, false, true},
		{1, 6, 33, 8, false, true, false},
		{2, 5, 45, 3, true, true, true},
		{1, 4, 37, 17, true, false, true},
	} {
		name := fmt.Sprintf("B%d_T%d_E%d_N%d_D%v_H0%v_dhT%v", c.B, c.T, c.E, c.N, c.d, c.h0, c.dhT)
		r := rand.New(rand.NewPCG(uint64(i), 12))
		in := api.ScanArgs{
			X: randT(b, r, -1, 1, c.B, c.T, c.E), Delta: randT(b, r, 0.01, 1, c.B, c.T, c.E),
			A: randT(b, r, -2, -0.1, c.E, c.N), Bm: randT(b, r, -1, 1, c.B, c.T, c.N), Cm: randT(b, r, -1, 1, c.B, c.T, c.N),
		}
		if c.d {
			in.D = randT(b, r, -1, 1, c.E)
		}
		if c.h0 {
			in.H0 = randT(b, r, -1, 1, c.B, c.E, c.N)
		}
		dy := randT(b, r, -1, 1, c.B, c.T, c.E)
		var dhT api.Tensor
		if c.dhT {
			dhT = randT(b, r, -1, 1, c.B, c.E, c.N)
		}
		grads := func(avx2 bool) []*Tensor {
			scanBackHasAVX2 = avx2
			g := api.ScanGrads{
				X: nanT(b, c.B, c.T, c.E), Delta: nanT(b, c.B, c.T, c.E), A: nanT(b, c.E, c.N),
				Bm: nanT(b, c.B, c.T, c.N), Cm: nanT(b, c.B, c.T, c.N),
			}
			if c.d {
				g.D = nanT(b, c.E)
			}
			if c.h0 {
				g.H0 = nanT(b, c.B, c.E, c.N)
			}
			b.SelectiveScanGrad(g, in, dy, dhT, nil)
			out := []*Tensor{g.X.(*Tensor), g.Delta.(*Tensor), g.A.(*Tensor), g.Bm.(*Tensor), g.Cm.(*Tensor)}
			if c.d {
				out = append(out, g.D.(*Tensor))
			}
			if c.h0 {
				out = append(out, g.H0.(*Tensor))
			}
			return out
		}
		fast, gen := grads(true), grads(false)
		for k := range fast {
			what := fmt.Sprintf("%s gradient %d", name, k)
			if c.N%4 != 0 {
				checkSameBits(t, what, fast[k].f32, gen[k].f32)
				continue
			}
			want := make([]float64, len(gen[k].f32))
			for j, v := range gen[k].f32 {
				want[j] = float64(v)
			}
			checkClose(t, what, fast[k].f32, want, 1e-6)
		}
	}
}
