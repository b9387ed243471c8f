package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/densessm/densessm/api"
)

func init() {
	registerFused("scan", "ScanKernels", seqTestScan)
	registerFused("scan_grad", "ScanKernels", seqTestScanGrad)
	registerFused("scan_misuse", "ScanKernels", seqTestScanMisuse)
}

// seqScanCase is one SelectiveScan configuration: X [B,T,E], A [E,N], and
// whether the skip weight D, the initial state H0 and the injection Inject
// are given.
type seqScanCase struct {
	B, T, E, N int
	d, h0, inj bool
}

func (c seqScanCase) String() string {
	return fmt.Sprintf("B%d_T%d_E%d_N%d_D%t_H0%t_Inj%t", c.B, c.T, c.E, c.N, c.d, c.h0, c.inj)
}

// Element counts of y [B,T,E], hT [B,E,N] and hs (and Inject) [B,T,E,N].
func (c seqScanCase) nY() int  { return c.B * c.T * c.E }
func (c seqScanCase) nH() int  { return c.B * c.E * c.N }
func (c seqScanCase) nHs() int { return c.B * c.T * c.E * c.N }

var seqScanCases = []seqScanCase{
	{B: 2, T: 7, E: 5, N: 3, d: true, h0: true},
	{B: 2, T: 13, E: 5, N: 3, d: false, h0: false},
	{B: 3, T: 5, E: 2, N: 4, d: false, h0: true},
	{B: 1, T: 11, E: 3, N: 1, d: true, h0: false},
	{B: 1, T: 1, E: 1, N: 1, d: true, h0: true},
	{B: 2, T: 0, E: 3, N: 2, d: true, h0: true}, // empty sequence: hT = H0
	{B: 2, T: 7, E: 5, N: 3, d: true, h0: true, inj: true},
	{B: 2, T: 6, E: 4, N: 2, d: false, h0: false, inj: true},
	{B: 1, T: 1, E: 2, N: 3, d: true, h0: false, inj: true},
	{B: 2, T: 0, E: 3, N: 2, d: false, h0: true, inj: true}, // empty: hT = H0, Inject unused
}

// seqScanData holds the inputs of one case (float32-exact), in the order
// of ScanArgs; d, h0 and inj are nil when absent.
type seqScanData struct {
	x, delta, a, bm, cm, d, h0, inj []float64
}

// list returns the inputs in ScanArgs order.
func (s seqScanData) list() [][]float64 {
	return [][]float64{s.x, s.delta, s.a, s.bm, s.cm, s.d, s.h0, s.inj}
}

// seqScanInputs draws realistic inputs: Delta = softplus(N(0,1)) and
// A = -exp(U(-1,1.5)), so the decays exp(Delta*A) spread over (0,1).
func seqScanInputs(c seqScanCase, seed uint64) seqScanData {
	r := newRand(seed)
	a := randVals(r, c.E*c.N, -1, 1.5)
	for i := range a {
		a[i] = -math.Exp(a[i])
	}
	d := seqScanData{
		x:     f32(randVals(r, c.B*c.T*c.E, -1, 1)),
		delta: f32(seqSoftplus(seqNormals(r, c.B*c.T*c.E))),
		a:     f32(a),
		bm:    f32(seqNormals(r, c.B*c.T*c.N)),
		cm:    f32(seqNormals(r, c.B*c.T*c.N)),
	}
	if c.d {
		d.d = f32(randVals(r, c.E, -1, 1))
	}
	if c.h0 {
		d.h0 = f32(randVals(r, c.B*c.E*c.N, -1, 1))
	}
	if c.inj {
		d.inj = f32(randVals(r, c.nHs(), -1, 1))
	}
	return d
}

// seqScanRef is the float64 reference of SelectiveScan; it returns y
// [B,T,E], the final carried state hT [B,E,N] and the pre-injection states
// hs [B,T,E,N] in one slice. Empty d, h0 or inj mean none.
func seqScanRef(c seqScanCase, x, delta, a, bm, cm, d, h0, inj []float64) []float64 {
	out := make([]float64, c.nY()+c.nH()+c.nHs())
	y, h, hs := out[:c.nY()], out[c.nY():c.nY()+c.nH()], out[c.nY()+c.nH():]
	copy(h, h0)
	for b := range c.B {
		for t := range c.T {
			bt := b*c.T + t
			for e := range c.E {
				dl, xv := delta[bt*c.E+e], x[bt*c.E+e]
				var acc float64
				for n := range c.N {
					hi, ti := (b*c.E+e)*c.N+n, (bt*c.E+e)*c.N+n
					h[hi] = math.Exp(dl*a[e*c.N+n])*h[hi] + dl*bm[bt*c.N+n]*xv
					hs[ti] = h[hi]
					if len(inj) > 0 {
						h[hi] += inj[ti]
					}
					acc += h[hi] * cm[bt*c.N+n]
				}
				if len(d) > 0 {
					acc += d[e] * xv
				}
				y[bt*c.E+e] = acc
			}
		}
	}
	return out
}

// seqScanArgs uploads the inputs of one case.
func seqScanArgs(be api.Backend, c seqScanCase, d seqScanData) api.ScanArgs {
	return api.ScanArgs{
		X:      upload(be, d.x, c.B, c.T, c.E),
		Delta:  upload(be, d.delta, c.B, c.T, c.E),
		A:      upload(be, d.a, c.E, c.N),
		Bm:     upload(be, d.bm, c.B, c.T, c.N),
		Cm:     upload(be, d.cm, c.B, c.T, c.N),
		D:      seqUploadOpt(be, d.d, c.E),
		H0:     seqUploadOpt(be, d.h0, c.B, c.E, c.N),
		Inject: seqUploadOpt(be, d.inj, c.B, c.T, c.E, c.N),
	}
}

// seqTestScan checks SelectiveScan against seqScanRef, with every output
// and with y alone.
func seqTestScan(t *testing.T, be scanBackend) {
	for i, c := range seqScanCases {
		runSub(t, c.String(), func(t *testing.T) {
			d := seqScanInputs(c, 400+uint64(i))
			want := seqScanRef(c, d.x, d.delta, d.a, d.bm, d.cm, d.d, d.h0, d.inj)
			ny, nh := c.nY(), c.nH()
			in := seqScanArgs(be, c, d)
			y, hT, hs := seqGarbage(be, c.B, c.T, c.E), seqGarbage(be, c.B, c.E, c.N), seqGarbage(be, c.B, c.T, c.E, c.N)
			be.SelectiveScan(y, hT, hs, in)
			checkRel(t, "y", download(y), want[:ny], RelTol)
			checkRel(t, "hT", download(hT), want[ny:ny+nh], RelTol)
			checkRel(t, "hs", download(hs), want[ny+nh:], RelTol)
			y = seqGarbage(be, c.B, c.T, c.E)
			be.SelectiveScan(y, nil, nil, in)
			checkRel(t, "y (hT and hs nil)", download(y), want[:ny], RelTol)
			if c.h0 { // the state advanced in place: hT is H0
				y = seqGarbage(be, c.B, c.T, c.E)
				be.SelectiveScan(y, in.H0, nil, in)
				checkRel(t, "y (hT = H0)", download(y), want[:ny], RelTol)
				checkRel(t, "hT = H0", download(in.H0), want[ny:ny+nh], RelTol)
			}
		})
	}
}

// seqTestScanGrad checks SelectiveScanGrad against finite differences of
// seqScanRef, with and without dhT and dhs.
func seqTestScanGrad(t *testing.T, be scanBackend) {
	for i, c := range seqScanCases {
		for _, up := range []struct{ dhT, dhs bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
			runSub(t, fmt.Sprintf("%v_dhT%t_dhs%t", c, up.dhT, up.dhs), func(t *testing.T) {
				d := seqScanInputs(c, 500+uint64(i))
				r := newRand(600 + uint64(i))
				dy := f32(randVals(r, c.nY(), -1, 1))
				dhT := make([]float64, c.nH()) // zeros stand for a nil dhT
				if up.dhT {
					dhT = f32(randVals(r, len(dhT), -1, 1))
				}
				dhs := make([]float64, c.nHs()) // and for a nil dhs
				if up.dhs {
					dhs = f32(randVals(r, len(dhs), -1, 1))
				}
				f := func(in [][]float64) []float64 {
					return seqScanRef(c, in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7])
				}
				want := numericGrad(f, d.list(), seqCat(dy, dhT, dhs))
				in := seqScanArgs(be, c, d)
				dyT := upload(be, dy, c.B, c.T, c.E)
				var dhTT, dhsT api.Tensor
				if up.dhT {
					dhTT = upload(be, dhT, c.B, c.E, c.N)
				}
				if up.dhs {
					dhsT = upload(be, dhs, c.B, c.T, c.E, c.N)
				}
				full := func() api.ScanGrads {
					return api.ScanGrads{
						X:      seqGarbage(be, c.B, c.T, c.E),
						Delta:  seqGarbage(be, c.B, c.T, c.E),
						A:      seqGarbage(be, c.E, c.N),
						Bm:     seqGarbage(be, c.B, c.T, c.N),
						Cm:     seqGarbage(be, c.B, c.T, c.N),
						D:      seqGarbageIf(be, c.d, c.E),
						H0:     seqGarbageIf(be, c.h0, c.B, c.E, c.N),
						Inject: seqGarbageIf(be, c.inj, c.B, c.T, c.E, c.N),
					}
				}
				// Every output at once, then each alone, so that a kernel
				// that needs a sibling output to be non-nil is caught.
				calls := []api.ScanGrads{full(), {X: full().X}, {Delta: full().Delta}, {A: full().A},
					{Bm: full().Bm}, {Cm: full().Cm}, {D: full().D}, {H0: full().H0}, {Inject: full().Inject}}
				for k, g := range calls {
					be.SelectiveScanGrad(g, in, dyT, dhTT, dhsT)
					for j, got := range []api.Tensor{g.X, g.Delta, g.A, g.Bm, g.Cm, g.D, g.H0, g.Inject} {
						seqCheckGrad(t, fmt.Sprintf("%s (call %d)", seqScanNames[j], k), got, want[j])
					}
				}
			})
		}
	}
}

// seqScanNames names the ScanArgs fields in seqScanData.list order.
var seqScanNames = []string{"dX", "dDelta", "dA", "dBm", "dCm", "dD", "dH0", "dInject"}

// seqTestScanMisuse checks that mismatched shapes panic with ErrShape.
func seqTestScanMisuse(t *testing.T, be scanBackend) {
	c := seqScanCase{B: 2, T: 5, E: 3, N: 4, d: true, h0: true, inj: true}
	good := func() api.ScanArgs { return seqScanArgs(be, c, seqScanInputs(c, 700)) }
	y, hT := be.Alloc(api.F32, c.B, c.T, c.E), be.Alloc(api.F32, c.B, c.E, c.N)
	for _, m := range []struct {
		what string
		fn   func()
	}{
		{"A of N+1 columns", func() { in := good(); in.A = be.Alloc(api.F32, c.E, c.N+1); be.SelectiveScan(y, hT, nil, in) }},
		{"Bm of T+1 steps", func() { in := good(); in.Bm = be.Alloc(api.F32, c.B, c.T+1, c.N); be.SelectiveScan(y, hT, nil, in) }},
		{"Cm of N+1", func() { in := good(); in.Cm = be.Alloc(api.F32, c.B, c.T, c.N+1); be.SelectiveScan(y, hT, nil, in) }},
		{"Delta of E+1", func() { in := good(); in.Delta = be.Alloc(api.F32, c.B, c.T, c.E+1); be.SelectiveScan(y, hT, nil, in) }},
		{"D of E+1", func() { in := good(); in.D = be.Alloc(api.F32, c.E+1); be.SelectiveScan(y, hT, nil, in) }},
		{"H0 transposed", func() { in := good(); in.H0 = be.Alloc(api.F32, c.B, c.N, c.E); be.SelectiveScan(y, hT, nil, in) }},
		{"Inject of [B,T,E]", func() { in := good(); in.Inject = be.Alloc(api.F32, c.B, c.T, c.E); be.SelectiveScan(y, hT, nil, in) }},
		{"y of T+1 steps", func() { be.SelectiveScan(be.Alloc(api.F32, c.B, c.T+1, c.E), hT, nil, good()) }},
		{"hT of B+1 rows", func() { be.SelectiveScan(y, be.Alloc(api.F32, c.B+1, c.E, c.N), nil, good()) }},
		{"hs of [B,E,N]", func() { be.SelectiveScan(y, hT, be.Alloc(api.F32, c.B, c.E, c.N), good()) }},
		{"grad dX of E+1", func() {
			be.SelectiveScanGrad(api.ScanGrads{X: be.Alloc(api.F32, c.B, c.T, c.E+1)}, good(), y, nil, nil)
		}},
		{"grad dA transposed", func() {
			be.SelectiveScanGrad(api.ScanGrads{A: be.Alloc(api.F32, c.N, c.E)}, good(), y, nil, nil)
		}},
		{"grad dy of T+1 steps", func() {
			be.SelectiveScanGrad(api.ScanGrads{X: be.Alloc(api.F32, c.B, c.T, c.E)}, good(), be.Alloc(api.F32, c.B, c.T+1, c.E), nil, nil)
		}},
		{"grad dhT transposed", func() {
			be.SelectiveScanGrad(api.ScanGrads{X: be.Alloc(api.F32, c.B, c.T, c.E)}, good(), y, be.Alloc(api.F32, c.B, c.N, c.E), nil)
		}},
		{"grad dhs of T+1 steps", func() {
			be.SelectiveScanGrad(api.ScanGrads{X: be.Alloc(api.F32, c.B, c.T, c.E)}, good(), y, nil, be.Alloc(api.F32, c.B, c.T+1, c.E, c.N))
		}},
		{"grad dInject without Inject", func() {
			in := good()
			in.Inject = nil
			be.SelectiveScanGrad(api.ScanGrads{Inject: be.Alloc(api.F32, c.B, c.T, c.E, c.N)}, in, y, nil, nil)
		}},
		{"grad dInject of [B,T,E]", func() {
			be.SelectiveScanGrad(api.ScanGrads{Inject: be.Alloc(api.F32, c.B, c.T, c.E)}, good(), y, nil, nil)
		}},
	} {
		mustPanicWith(t, m.what, m.fn, api.ErrShape)
	}
}
