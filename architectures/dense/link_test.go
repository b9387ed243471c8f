package dense

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/nn"
)

// Gradient checks of Link. For each combination of the knobs, Gate and Fuse
// are built on an nn.Tape over the CPU backend with small random inputs; the
// loss is a random linear functional sum(c * out) of the fused output, and
// the gradient Backward gives every parameter and every input is compared
// with central finite differences (step 1e-6, relative to the value) of
// linkRef, a float64 reference of Fuse written here.
//
// Tolerance: max |backward - fd| / max |fd| over each tensor must be below
// linkGradTol = 1e-4. The finite differences of the float64 reference are
// accurate to about 1e-9; what remains is the float32 rounding of the
// backward pass (about 1e-6 relative for graphs this small).
const linkGradTol = 1e-4

// Sizes of the test: rows of B*T tokens, input width d, linked width W,
// bottleneck ratio 2 (silu-mlp hidden width d/2), and at most linkM
// previous layers.
const (
	linkB, linkT = 2, 3
	linkD, linkW = 8, 5
	linkRatio    = 2
	linkM        = 2
	linkEps      = 1e-5
)

// linkCase is one combination of the knobs with a number of previous
// layers.
type linkCase struct {
	cfg   Config
	nPrev int
}

func (c linkCase) String() string {
	return fmt.Sprintf("gate=%s/proj=%s/fusion=%s/norm=%s/prev=%d",
		c.cfg.Gate, c.cfg.Projection, c.cfg.Fusion, c.cfg.Norm, c.nPrev)
}

// linkCases returns every combination of gate, projection, fusion and norm,
// each with 0, 1 and 2 previous layers (M = 2, so concat fusion with fewer
// previous layers fills zeros into the remaining slots).
func linkCases() []linkCase {
	var cases []linkCase
	for _, gate := range []string{GateSiluMLP, GateLinear, GateNone} {
		for _, proj := range []string{ProjIdentity, ProjLinear} {
			for _, fusion := range []string{FuseAdd, FuseConcat} {
				for _, norm := range []string{NormRMS, NormNone} {
					for nPrev := range linkM + 1 {
						cfg := Config{M: linkM, Projection: proj, Gate: gate, GateRatio: linkRatio, Fusion: fusion, Norm: norm}
						cases = append(cases, linkCase{cfg, nPrev})
					}
				}
			}
		}
	}
	return cases
}

// linkTensor is one tensor the loss depends on: a parameter or an input,
// its Var, and its values as float64 (the reference reads them, and the
// finite differences perturb them in place).
type linkTensor struct {
	name string
	v    *nn.Var
	vals []float64
}

// linkSetup is a Link with random parameters and inputs.
type linkSetup struct {
	b       api.Backend
	link    *Link
	x, u    *linkTensor
	prev    []*linkTensor
	params  map[string]*linkTensor // by role: gateIn, gateOut, proj, fuse, norm
	tensors []*linkTensor          // every parameter and input, for the checks
}

// newLinkSetup builds the link of c with every parameter drawn U(-1,1) (the
// norm weight U(0.5,1.5)) and inputs x, prev [B,T,W] and u [B,T,d] drawn
// U(-1,1).
func newLinkSetup(t *testing.T, b api.Backend, c linkCase, seed uint64) *linkSetup {
	t.Helper()
	if err := c.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 7))
	ps := nn.NewParams(b, int64(seed))
	link := NewLink(ps.Scope(), c.cfg, DefaultNames, linkD, linkW, linkEps, 1)
	s := &linkSetup{b: b, link: link, params: map[string]*linkTensor{}}
	param := func(role string, v *nn.Var, lo, hi float64) {
		lt := &linkTensor{name: role, v: v, vals: linkRand(r, v.Shape().NumElements(), lo, hi)}
		linkSet(v.Value(), lt.vals)
		s.params[role] = lt
		s.tensors = append(s.tensors, lt)
	}
	if link.gateIn != nil {
		param("gateIn", link.gateIn.Weight, -1, 1)
	}
	if link.gateOut != nil {
		param("gateOut", link.gateOut.Weight, -1, 1)
	}
	if link.proj != nil {
		param("proj", link.proj.Weight, -1, 1)
	}
	if link.fuse != nil {
		param("fuse", link.fuse.Weight, -1, 1)
	}
	if link.norm != nil {
		param("norm", link.norm.Weight, 0.5, 1.5)
	}
	if len(s.params) != ps.Len() {
		t.Fatalf("%d parameters made, %d known to the test", ps.Len(), len(s.params))
	}
	input := func(name string, width int) *linkTensor {
		vals := linkRand(r, linkB*linkT*width, -1, 1)
		lt := &linkTensor{name: name, v: nn.NewVar(linkUpload(b, vals, linkB, linkT, width), true), vals: vals}
		s.tensors = append(s.tensors, lt)
		return lt
	}
	s.x = input("x", linkW)
	for i := range c.nPrev {
		s.prev = append(s.prev, input(fmt.Sprintf("prev[%d]", i), linkW))
	}
	s.u = input("u", linkD)
	return s
}

// linkRand returns n values uniform in [lo,hi), rounded to float32.
func linkRand(r *rand.Rand, n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(float32(lo + (hi-lo)*r.Float64()))
	}
	return v
}

// linkUpload returns a new F32 tensor holding vals.
func linkUpload(b api.Backend, vals []float64, shape ...int) api.Tensor {
	h := make([]float32, len(vals))
	for i, x := range vals {
		h[i] = float32(x)
	}
	return api.FromFloat32s(b, h, shape...)
}

// linkSet overwrites an F32 tensor with vals.
func linkSet(t api.Tensor, vals []float64) {
	h := make([]float32, len(vals))
	for i, x := range vals {
		h[i] = float32(x)
	}
	raw := make([]byte, 4*len(h))
	if err := api.EncodeFloat32(raw, api.F32, h); err != nil {
		panic(err)
	}
	t.Backend().Upload(t, raw)
}

// linkDown returns an F32 tensor's values as float64.
func linkDown(t api.Tensor) []float64 {
	h := api.Float32s(t)
	out := make([]float64, len(h))
	for i, x := range h {
		out[i] = float64(x)
	}
	return out
}

// forward builds Gate and Fuse on tp.
func (s *linkSetup) forward(tp *nn.Tape) *nn.Var {
	prev := make([]*nn.Var, len(s.prev))
	for i, p := range s.prev {
		prev[i] = p.v
	}
	return s.link.Fuse(tp, s.x.v, prev, s.link.Gate(tp, s.u.v))
}

// ref is the float64 reference of Gate and Fuse on the current values of
// the setup's tensors; it returns the fused output [B*T, W].
func (s *linkSetup) ref() []float64 {
	rows, w := linkB*linkT, linkW
	if len(s.prev) == 0 {
		return append([]float64(nil), s.x.vals...)
	}
	val := func(role string) []float64 {
		if p, ok := s.params[role]; ok {
			return p.vals
		}
		return nil
	}
	var gate []float64 // nil for GateNone (a = 1)
	switch {
	case val("gateIn") != nil:
		hidden := s.link.cfg.GateHidden(linkD)
		h := refSilu(refLinear(s.u.vals, rows, linkD, val("gateIn"), hidden))
		gate = refSilu(refLinear(h, rows, hidden, val("gateOut"), w))
	case val("gateOut") != nil:
		gate = refLinear(s.u.vals, rows, linkD, val("gateOut"), w)
	}
	sel := func(p []float64) []float64 {
		if wp := val("proj"); wp != nil {
			p = refLinear(p, rows, w, wp, w)
		}
		out := append([]float64(nil), p...)
		for i := range out {
			if gate != nil {
				out[i] *= gate[i]
			}
		}
		return out
	}
	var fused []float64
	if wc := val("fuse"); wc != nil {
		m := s.link.cfg.M
		cat := make([]float64, rows*(m+1)*w) // [x; sel(p_1); ...; zeros]
		for r := range rows {
			copy(cat[r*(m+1)*w:], s.x.vals[r*w:(r+1)*w])
		}
		for k, p := range s.prev {
			sp := sel(p.vals)
			for r := range rows {
				copy(cat[(r*(m+1)+k+1)*w:], sp[r*w:(r+1)*w])
			}
		}
		fused = refLinear(cat, rows, (m+1)*w, wc, w)
	} else {
		fused = append([]float64(nil), s.x.vals...)
		for _, p := range s.prev {
			for i, v := range sel(p.vals) {
				fused[i] += v
			}
		}
	}
	if wn := val("norm"); wn != nil {
		for r := range rows {
			row := fused[r*w : (r+1)*w]
			var ss float64
			for _, v := range row {
				ss += v * v
			}
			scale := 1 / math.Sqrt(ss/float64(w)+float64(float32(linkEps)))
			for i := range row {
				row[i] *= scale * wn[i]
			}
		}
	}
	return fused
}

// refLinear returns x [rows, in] W^T for W [out, in].
func refLinear(x []float64, rows, in int, wt []float64, out int) []float64 {
	y := make([]float64, rows*out)
	for r := range rows {
		for o := range out {
			var acc float64
			for i := range in {
				acc += x[r*in+i] * wt[o*in+i]
			}
			y[r*out+o] = acc
		}
	}
	return y
}

// refSilu returns x*sigmoid(x) for each value.
func refSilu(x []float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v / (1 + math.Exp(-v))
	}
	return out
}

// linkRelErr returns max |got-want| / max |want|, or max |got-want| when
// want is all zero.
func linkRelErr(got, want []float64) float64 {
	var diff, scale float64
	for i := range want {
		diff, scale = max(diff, math.Abs(got[i]-want[i])), max(scale, math.Abs(want[i]))
	}
	if math.IsNaN(diff) {
		return math.Inf(1)
	}
	if scale == 0 {
		return diff
	}
	return diff / scale
}

// TestLinkReference checks the reference itself against Fuse's forward
// output, so that the gradient checks below compare against the right
// function.
func TestLinkReference(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 2})
	for i, c := range linkCases() {
		t.Run(c.String(), func(t *testing.T) {
			s := newLinkSetup(t, b, c, uint64(i))
			got := linkDown(s.forward(nn.NewInferenceTape(b)).Value())
			if e := linkRelErr(got, s.ref()); e > 1e-5 {
				t.Errorf("Fuse differs from the float64 reference by %.3g", e)
			}
		})
	}
}

func TestLinkGrad(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 2})
	for i, c := range linkCases() {
		t.Run(c.String(), func(t *testing.T) {
			s := newLinkSetup(t, b, c, 100+uint64(i))
			r := rand.New(rand.NewPCG(uint64(i), 8))
			coef := linkRand(r, linkB*linkT*linkW, -1, 1)
			cv := nn.NewVar(linkUpload(b, coef, linkB, linkT, linkW), false)
			tp := nn.NewTape(b)
			tp.Backward(tp.Sum(tp.Mul(s.forward(tp), cv)))
			loss := func() float64 {
				var l float64
				for j, v := range s.ref() {
					l += coef[j] * v
				}
				return l
			}
			for _, lt := range s.tensors {
				want := make([]float64, len(lt.vals))
				for j, x := range lt.vals {
					h := 1e-6 * max(1, math.Abs(x))
					lt.vals[j] = x + h
					up := loss()
					lt.vals[j] = x - h
					down := loss()
					lt.vals[j] = x
					want[j] = (up - down) / (2 * h)
				}
				got := make([]float64, len(want)) // no gradient reached it: zeros
				if g := lt.v.Grad(); g != nil {
					got = linkDown(g)
				}
				if e := linkRelErr(got, want); e > linkGradTol {
					t.Errorf("d%s: relative error %.3g > %g", lt.name, e, linkGradTol)
				}
			}
		})
	}
}

// TestLinkFuseStep checks that FuseStep, the direct-kernel decode path,
// equals Fuse on a single token: inputs [B,1,...] for Fuse, [B,...] for
// FuseStep, agreeing to 1e-6 relative in the max norm.
func TestLinkFuseStep(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 2})
	for i, c := range linkCases() {
		t.Run(c.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(i), 9))
			ps := nn.NewParams(b, int64(i))
			link := NewLink(ps.Scope(), c.cfg, DefaultNames, linkD, linkW, linkEps, 0.5)
			for _, v := range ps.Vars() {
				linkSet(v.Value(), linkRand(r, v.Shape().NumElements(), -1, 1))
			}
			x := linkRand(r, linkB*linkW, -1, 1)
			u := linkRand(r, linkB*linkD, -1, 1)
			prev := make([][]float64, c.nPrev)
			for k := range prev {
				prev[k] = linkRand(r, linkB*linkW, -1, 1)
			}
			// The tape path on [B,1,W].
			tp := nn.NewInferenceTape(b)
			prevVars := make([]*nn.Var, c.nPrev)
			prevStep := make([]api.Tensor, c.nPrev)
			for k, p := range prev {
				prevVars[k] = nn.NewVar(linkUpload(b, p, linkB, 1, linkW), false)
				prevStep[k] = linkUpload(b, p, linkB, linkW)
			}
			uVar := nn.NewVar(linkUpload(b, u, linkB, 1, linkD), false)
			want := linkDown(link.Fuse(tp, nn.NewVar(linkUpload(b, x, linkB, 1, linkW), false), prevVars, link.Gate(tp, uVar)).Value())
			// The decode path on [B,W], twice with the same scratch to
			// check that it carries nothing between calls.
			sc := link.NewStepScratch(b, linkB, linkD)
			xs, us := linkUpload(b, x, linkB, linkW), linkUpload(b, u, linkB, linkD)
			for call := range 2 {
				got := linkDown(link.FuseStep(b, sc, xs, prevStep, us))
				if e := linkRelErr(got, want); e > 1e-6 {
					t.Errorf("call %d: FuseStep differs from Fuse by %.3g", call, e)
				}
			}
		})
	}
}
