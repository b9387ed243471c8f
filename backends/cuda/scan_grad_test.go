package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// The scan gradient tests compare SelectiveScanGrad on the fake device,
// with the host fallback off (a host round-trip would panic), against the
// CPU backend on the same random inputs. Tolerances are relative to the
// largest element of the expected tensor: 1e-5 for the gradients of one
// (b,t,e) or (b,e,n) (dX, dDelta, dInject, dH0: each a sum over at most
// 33 states in double of terms that differ from the CPU's by the float
// rounding of the recomputed states and of exp), 1e-4 for the sums over
// channels, tokens or batch rows (dA, dD, dBm, dCm: the same terms summed
// in another order, with cancellation).
const (
	scanGradTol    = 1e-5
	scanGradSumTol = 1e-4
)

// scanGradCase is one call: the shape, which optional inputs and upstream
// gradients are given, which gradients are asked for (by ScanGrads field
// name; nil for all), and whether dInject is written into dhs's memory
// and dH0 into dhT's.
type scanGradCase struct {
	B, T, E, N   int
	d, h0, inj   bool
	dhT, dhs     bool
	skip         string // a gradient left nil, or ""
	alias        bool
	wantLaunched bool
}

func (c scanGradCase) String() string {
	return fmt.Sprintf("B%d_T%d_E%d_N%d_d=%t_h0=%t_inj=%t_dhT=%t_dhs=%t_skip=%s_alias=%t",
		c.B, c.T, c.E, c.N, c.d, c.h0, c.inj, c.dhT, c.dhs, c.skip, c.alias)
}

// scanGradNames are the ScanGrads fields in order.
var scanGradNames = []string{"X", "Delta", "A", "Bm", "Cm", "D", "H0", "Inject"}

// scanGradInputs are a call's random inputs as host slices, by name.
func scanGradInputs(c scanGradCase, rng *rand.Rand) map[string][]float32 {
	gauss := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * scale)
		}
		return v
	}
	uniform := func(n int, lo, hi float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(lo + (hi-lo)*rng.Float64())
		}
		return v
	}
	B, T, E, N := c.B, c.T, c.E, c.N
	in := map[string][]float32{
		"X": gauss(B*T*E, 1), "Delta": uniform(B*T*E, 0.01, 0.6), "A": uniform(E*N, -2, -0.05),
		"Bm": gauss(B*T*N, 1), "Cm": gauss(B*T*N, 1), "dy": gauss(B*T*E, 1),
	}
	opt := func(on bool, name string, v []float32) {
		if on {
			in[name] = v
		}
	}
	opt(c.d, "D", gauss(E, 1))
	opt(c.h0, "H0", gauss(B*E*N, 0.5))
	opt(c.inj, "Inject", gauss(B*T*E*N, 0.3))
	opt(c.dhT, "dhT", gauss(B*E*N, 1))
	opt(c.dhs, "dhs", gauss(B*T*E*N, 0.5))
	return in
}

// runScanGrad runs SelectiveScanGrad on backend k with the inputs, every
// gradient output first filled with 7 (they must be overwritten), and
// returns the gradients asked for, by name.
func runScanGrad(k api.Backend, c scanGradCase, in map[string][]float32) map[string][]float32 {
	B, T, E, N := c.B, c.T, c.E, c.N
	shapes := map[string][]int{
		"X": {B, T, E}, "Delta": {B, T, E}, "A": {E, N}, "Bm": {B, T, N}, "Cm": {B, T, N},
		"D": {E}, "H0": {B, E, N}, "Inject": {B, T, E, N}, "dy": {B, T, E}, "dhT": {B, E, N}, "dhs": {B, T, E, N},
	}
	t := map[string]api.Tensor{}
	for name, v := range in {
		t[name] = api.FromFloat32s(k, v, shapes[name]...)
	}
	grads := map[string]api.Tensor{}
	for _, name := range scanGradNames {
		if name == c.skip || (name == "D" && !c.d) || (name == "H0" && !c.h0) || (name == "Inject" && !c.inj) {
			continue
		}
		switch {
		case c.alias && name == "Inject" && c.dhs:
			grads[name] = t["dhs"]
		case c.alias && name == "H0" && c.dhT:
			grads[name] = t["dhT"]
		default:
			g := k.Alloc(api.F32, shapes[name]...)
			k.(api.Kernels).Fill(g, 7)
			grads[name] = g
		}
	}
	args := api.ScanArgs{X: t["X"], Delta: t["Delta"], A: t["A"], Bm: t["Bm"], Cm: t["Cm"], D: t["D"], H0: t["H0"], Inject: t["Inject"]}
	g := api.ScanGrads{X: grads["X"], Delta: grads["Delta"], A: grads["A"], Bm: grads["Bm"], Cm: grads["Cm"],
		D: grads["D"], H0: grads["H0"], Inject: grads["Inject"]}
	k.(api.ScanKernels).SelectiveScanGrad(g, args, t["dy"], t["dhT"], t["dhs"])
	out := map[string][]float32{}
	for name, g := range grads {
		out[name] = api.Float32s(g)
	}
	return out
}

// checkScanGrad runs c on b (fake device, no host fallback) and on the
// CPU backend, compares the gradients
// and records the largest relative error of each gradient in worst.
func checkScanGrad(t *testing.T, b *Backend, ref api.Backend, c scanGradCase, seed uint64, worst map[string]float64) {
	t.Helper()
	in := scanGradInputs(c, rand.New(rand.NewPCG(seed, 17)))
	before := fakeOf(b).launched()
	got := runScanGrad(b, c, in)
	after := fakeOf(b).launched()
	plain := c
	plain.alias = false // the CPU backend reads dhs after writing dInject
	want := runScanGrad(ref, plain, in)
	if c.wantLaunched && after["ds_selective_scan_grad_f32"] != before["ds_selective_scan_grad_f32"]+1 {
		t.Errorf("%v: ds_selective_scan_grad_f32 launched %d times", c, after["ds_selective_scan_grad_f32"]-before["ds_selective_scan_grad_f32"])
	}
	for name, w := range want {
		tol := scanGradTol
		if name == "A" || name == "D" || name == "Bm" || name == "Cm" {
			tol = scanGradSumTol
		}
		g := got[name]
		if len(w) == 0 {
			continue
		}
		for i := range g {
			if math.IsNaN(float64(g[i])) {
				t.Fatalf("%v: d%s[%d] is NaN", c, name, i)
			}
		}
		e := maxRel(g, w)
		worst[name] = max(worst[name], e)
		if e > tol {
			t.Errorf("%v: d%s differs from the CPU backend's by %g (relative; tolerance %g)", c, name, e, tol)
		}
	}
}

// newScanFake is a backend on the fake device without the host fallback.
func newScanFake(t *testing.T) *Backend {
	b, err := NewWith(Options{Fake: true, BackendOptions: api.BackendOptions{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestSelectiveScanGradFake checks ds_selective_scan_grad_f32 and
// ds_scan_grad_sum_f32 (through their Go models) against the CPU backend:
// B in {1,3}, T in {0,1,5,37} (37 is six chunks of 7, the last of 2), E in
// {1,7,40} (40 is two blocks of 32 channels at N = 16, the second partly
// empty), N in {1,16,33}, with every optional input and upstream gradient
// and with none; then, on a few shapes, each gradient left nil in turn,
// dInject in dhs's memory and dH0 in dhT's, and N = 256 (the chunk limited
// by shared memory) and N = 0.
func TestSelectiveScanGradFake(t *testing.T) {
	b, ref := newScanFake(t), cpu.New(api.BackendOptions{Threads: 1})
	seed, worst := uint64(1), map[string]float64{}
	defer func() { t.Logf("largest relative errors: %v", worst) }()
	for _, B := range []int{1, 3} {
		for _, T := range []int{0, 1, 5, 37} {
			for _, E := range []int{1, 7, 40} {
				for _, N := range []int{1, 16, 33} {
					for _, all := range []bool{true, false} {
						c := scanGradCase{B: B, T: T, E: E, N: N, d: all, h0: all, inj: all, dhT: all, dhs: all, wantLaunched: true}
						checkScanGrad(t, b, ref, c, seed, worst)
						seed++
					}
				}
			}
		}
	}
	for _, s := range []scanGradCase{{B: 2, T: 37, E: 40, N: 16}, {B: 1, T: 5, E: 7, N: 33}, {B: 3, T: 1, E: 7, N: 1}} {
		for _, skip := range scanGradNames {
			c := s
			c.d, c.h0, c.inj, c.dhT, c.dhs, c.skip, c.wantLaunched = true, true, true, true, true, skip, true
			checkScanGrad(t, b, ref, c, seed, worst)
			seed++
			c.d, c.h0, c.inj, c.dhT, c.dhs = false, false, false, false, false
			checkScanGrad(t, b, ref, c, seed, worst)
			seed++
		}
		c := s
		c.d, c.h0, c.inj, c.dhT, c.dhs, c.alias, c.wantLaunched = true, true, true, true, true, true, true
		checkScanGrad(t, b, ref, c, seed, worst)
		seed++
	}
	checkScanGrad(t, b, ref, scanGradCase{B: 2, T: 300, E: 5, N: 256, d: true, h0: true, inj: true, dhT: true, dhs: true, wantLaunched: true}, seed, worst)
	checkScanGrad(t, b, ref, scanGradCase{B: 2, T: 5, E: 3, N: 0, d: true, h0: true, dhT: true, wantLaunched: true}, seed+1, worst)
	// No rows, no channels: the sums are zero, nothing is launched.
	checkScanGrad(t, b, ref, scanGradCase{B: 0, T: 3, E: 4, N: 2, d: true}, seed+2, worst)
	checkScanGrad(t, b, ref, scanGradCase{B: 2, T: 3, E: 0, N: 2, d: true}, seed+3, worst)
	if h := b.HostOps(); len(h) != 0 {
		t.Errorf("host round-trips: %v", h)
	}
	if n := fakeOf(b).launched()["ds_scan_grad_sum_f32"]; n == 0 {
		t.Errorf("ds_scan_grad_sum_f32 never launched")
	}
}

// TestSelectiveScanGradHost checks that a scan of more than 256 states
// still runs on the host, as "SelectiveScanGrad (N > 256)", and that a
// gradient of D asked for without D is api.ErrShape.
func TestSelectiveScanGradHost(t *testing.T) {
	b, ref := newFake(t, Options{}), cpu.New(api.BackendOptions{Threads: 1})
	checkScanGrad(t, b, ref, scanGradCase{B: 1, T: 3, E: 2, N: 300, d: true, dhT: true}, 99, map[string]float64{})
	if n := b.HostOps()["SelectiveScanGrad (N > 256)"]; n != 1 {
		t.Errorf("host ops %v", b.HostOps())
	}
	f := func(shape ...int) api.Tensor { return b.Alloc(api.F32, shape...) }
	in := api.ScanArgs{X: f(1, 2, 3), Delta: f(1, 2, 3), A: f(3, 4), Bm: f(1, 2, 4), Cm: f(1, 2, 4)}
	r := catch(func() { b.SelectiveScanGrad(api.ScanGrads{D: f(3)}, in, f(1, 2, 3), nil, nil) })
	if err, _ := r.(error); !errors.Is(err, api.ErrShape) {
		t.Errorf("dD without D: %v", r)
	}
}
