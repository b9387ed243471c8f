// Package backendtest is the compliance suite every api.Backend must pass:
// each kernel against a float64 reference written here on random shapes
// (odd, prime, size 1 and empty where legal), and each gradient kernel
// against central finite differences of that float64 reference.
//
// A backend's test calls Run:
//
//	func TestCompliance(t *testing.T) { backendtest.Run(t, cpu.New(api.BackendOptions{})) }
//
// Tolerances, stated once for the whole suite: a float32 kernel matches the
// float64 reference to RelTol in the max-norm sense (max |got-want| over
// max |want|), loosened only where an op says why; a gradient kernel matches
// finite differences to GradTol.
//
// The groups of the optional fused kernels (conv1d*, scan*, rotary*,
// retention*: api.ConvKernels, api.ScanKernels, api.RotaryKernels,
// api.RetentionKernels) run only on a backend that implements their
// interface, and are skipped on one that does not: there package nn runs
// its references, composed of api.Kernels, which nn's tests check against
// the CPU backend's fused kernels. KernelsOnly hides a backend's fused
// kernels, to run models on those references.
package backendtest

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// Tolerances of the suite (see the package comment).
const (
	RelTol  = 1e-5
	GradTol = 1e-3
)

type suiteCase struct {
	name string
	run  func(t *testing.T, b api.Backend)
}

var cases []suiteCase

// register adds a group of tests to the suite; files of this package call
// it from init. Run executes the groups in name order.
func register(name string, run func(t *testing.T, b api.Backend)) {
	cases = append(cases, suiteCase{name, run})
}

// The backends the fused-kernel groups take: a Backend with one of the
// optional interfaces.
type (
	convBackend interface {
		api.Backend
		api.ConvKernels
	}
	scanBackend interface {
		api.Backend
		api.ScanKernels
	}
	rotaryBackend interface {
		api.Backend
		api.RotaryKernels
	}
	retentionBackend interface {
		api.Backend
		api.RetentionKernels
	}
)

// registerFused adds a group of tests of the fused-kernel interface iface
// (named for the skip message), which B adds to api.Backend: the group runs
// on a backend that implements it and is skipped on one that does not.
func registerFused[B api.Backend](name, iface string, run func(t *testing.T, b B)) {
	register(name, func(t *testing.T, b api.Backend) {
		fb, ok := b.(B)
		if !ok {
			t.Skipf("backend %q does not implement api.%s (nn runs its reference instead)", b.Name(), iface)
		}
		run(t, fb)
	})
}

// KernelsOnly returns b with only the methods of api.Backend: the optional
// fused kernels b implements (api.ConvKernels, api.ScanKernels,
// api.RotaryKernels, api.RetentionKernels) are out of reach of a type
// assertion, so that package nn runs its references on it. The tensors are
// b's own.
func KernelsOnly(b api.Backend) api.Backend { return kernelsOnly{b} }

// kernelsOnly embeds the interface value, whose method set is api.Backend's
// alone.
type kernelsOnly struct{ api.Backend }

// Run runs every registered group as a subtest against b.
func Run(t *testing.T, b api.Backend) {
	sorted := slices.Clone(cases)
	slices.SortFunc(sorted, func(x, y suiteCase) int {
		if x.name < y.name {
			return -1
		}
		if x.name > y.name {
			return 1
		}
		return 0
	})
	for _, c := range sorted {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("kernel panicked: %v", r)
				}
			}()
			c.run(t, b)
		})
	}
}

// runSub runs fn as a subtest. Run recovers kernel panics only in the
// group's own goroutine, and t.Run starts a new one, so each subtest
// recovers its own: one unfinished kernel fails its case, not the binary.
func runSub(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("kernel panicked: %v", r)
			}
		}()
		fn(t)
	})
}

// newRand returns a deterministic generator for one test.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// randVals returns n values uniform in [lo, hi).
func randVals(r *rand.Rand, n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = lo + (hi-lo)*r.Float64()
	}
	return v
}

// f32 rounds values to float32 precision, so that the float64 reference
// sees exactly the inputs the backend sees.
func f32(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(float32(x))
	}
	return out
}

// upload puts values (rounded to float32) into a new F32 tensor on b.
func upload(b api.Backend, v []float64, shape ...int) api.Tensor {
	h := make([]float32, len(v))
	for i, x := range v {
		h[i] = float32(x)
	}
	return api.FromFloat32s(b, h, shape...)
}

// download reads an F32 tensor as float64 values.
func download(t api.Tensor) []float64 {
	h := api.Float32s(t)
	out := make([]float64, len(h))
	for i, x := range h {
		out[i] = float64(x)
	}
	return out
}

// relErr returns max |got-want| / max |want| (max |got-want| when want is
// all zero). NaN anywhere gives +Inf.
func relErr(got, want []float64) float64 {
	var diff, scale float64
	for i := range want {
		if math.IsNaN(got[i]) || math.IsNaN(want[i]) {
			return math.Inf(1)
		}
		diff = max(diff, math.Abs(got[i]-want[i]))
		scale = max(scale, math.Abs(want[i]))
	}
	if scale == 0 {
		return diff
	}
	return diff / scale
}

// checkRel fails t unless got matches want to tol by relErr.
func checkRel(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	if e := relErr(got, want); e > tol {
		i := worst(got, want)
		t.Errorf("%s: relative error %.3g > %.1g (worst at %d: got %.8g, want %.8g)", what, e, tol, i, got[i], want[i])
	}
}

func worst(got, want []float64) int {
	w, wd := 0, -1.0
	for i := range want {
		if d := math.Abs(got[i] - want[i]); d > wd || math.IsNaN(d) {
			w, wd = i, d
		}
	}
	return w
}

// numericGrad returns the gradients of L(x) = sum_j dy[j] * f(x)[j] with
// respect to each input slice, by central differences in float64. f must not
// modify its arguments. Inputs listed in skip are not differentiated (nil
// result).
func numericGrad(f func(in [][]float64) []float64, in [][]float64, dy []float64, skip ...int) [][]float64 {
	loss := func() float64 {
		y := f(in)
		var s float64
		for j := range y {
			s += dy[j] * y[j]
		}
		return s
	}
	grads := make([][]float64, len(in))
	for k := range in {
		if slices.Contains(skip, k) {
			continue
		}
		g := make([]float64, len(in[k]))
		for i := range in[k] {
			x := in[k][i]
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
