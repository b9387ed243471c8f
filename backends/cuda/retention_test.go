package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// The retention tests compare the backend on the fake device, with the host
// fallback off (a host round-trip would panic), against the CPU backend on
// the same random inputs. Tolerances are relative to the largest value of
// the expected tensor: 1e-5 for outputs and states, 1e-4 for gradients (a
// chain of up to three float32 products; the fake cuBLAS sums each product
// in float64, the CPU backend's sgemm in float32).
const (
	retOutTol  = 1e-5
	retGradTol = 1e-4
)

// retShape is one shape of the retention tests.
type retShape struct{ B, H, T, dk, dv int }

func (s retShape) String() string {
	return fmt.Sprintf("B%d_H%d_T%d_dk%d_dv%d", s.B, s.H, s.T, s.dk, s.dv)
}

// retShapes are every combination of B in {1,2}, H in {1,3}, T in {0,1,7,33},
// dk in {4,16} and dv in {3,16}.
func retShapes() []retShape {
	var out []retShape
	for _, B := range []int{1, 2} {
		for _, H := range []int{1, 3} {
			for _, T := range []int{0, 1, 7, 33} {
				for _, dk := range []int{4, 16} {
					for _, dv := range []int{3, 16} {
						out = append(out, retShape{B, H, T, dk, dv})
					}
				}
			}
		}
	}
	return out
}

// retForm is a form with its chunk length.
type retForm struct {
	name  string
	form  api.RetentionForm
	chunk int
}

// retForms are the forms tested on T tokens: parallel, chunkwise with
// chunks of 1, of 4 (not dividing 7 or 33), of 11 (dividing 33) and of
// the whole sequence, and recurrent.
func retForms(T int) []retForm {
	return []retForm{
		{"parallel", api.RetentionParallel, 0}, {"chunk1", api.RetentionChunkwise, 1}, {"chunk4", api.RetentionChunkwise, 4},
		{"chunk11", api.RetentionChunkwise, 11}, {"chunkT", api.RetentionChunkwise, max(T, 1)}, {"recurrent", api.RetentionRecurrent, 0},
	}
}

// retVariant is how a stateful form is called: with S0 or not, at an
// offset, with the final state (or its gradient) and, for the forward
// pass, sT in S0's memory.
type retVariant struct {
	s0     bool
	offset int
	state  bool // sT (forward) or dsT (gradient) given
	alias  bool // sT is S0
}

func (v retVariant) String() string {
	return fmt.Sprintf("s0=%t_offset%d_state=%t_alias=%t", v.s0, v.offset, v.state, v.alias)
}

// retVariants are the variants of a form: none for the parallel form.
func retVariants(form api.RetentionForm, grad bool) []retVariant {
	if form == api.RetentionParallel {
		return []retVariant{{}}
	}
	vs := []retVariant{{}, {state: true}, {s0: true, state: true}, {s0: true, offset: 5}, {s0: true, offset: 5, state: true}}
	if !grad {
		vs = append(vs, retVariant{s0: true, offset: 5, state: true, alias: true}, retVariant{s0: true, state: true, alias: true})
	}
	return vs
}

// retPair is a tensor with the same contents on the device and the host.
type retPair struct{ dev, host api.Tensor }

// retBackends returns a backend on the fake device without the host
// fallback and the CPU backend.
func retBackends(t *testing.T) (*Backend, api.Backend) {
	t.Helper()
	b, err := NewWith(Options{Fake: true, BackendOptions: api.BackendOptions{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, cpu.New(api.BackendOptions{Threads: 1})
}

// retRandom returns a pair of random tensors in [-1, 1).
func retRandom(b *Backend, c api.Backend, rng *rand.Rand, shape ...int) retPair {
	n := api.Shape(shape).NumElements()
	data := make([]float32, n)
	for i := range data {
		data[i] = 2*rng.Float32() - 1
	}
	return retPair{api.FromFloat32s(b, data, shape...), api.FromFloat32s(c, data, shape...)}
}

// retInputs are a test's random inputs.
type retInputs struct {
	q, k, v, s0 retPair
	gamma       []float32
}

func newRetInputs(b *Backend, c api.Backend, rng *rand.Rand, s retShape) retInputs {
	in := retInputs{
		q: retRandom(b, c, rng, s.B, s.H, s.T, s.dk), k: retRandom(b, c, rng, s.B, s.H, s.T, s.dk),
		v: retRandom(b, c, rng, s.B, s.H, s.T, s.dv), s0: retRandom(b, c, rng, s.B, s.H, s.dk, s.dv),
	}
	for h := range s.H { // RetNet's decays, 1 - 2^(-5-h)
		in.gamma = append(in.gamma, float32(1-math.Exp2(-5-float64(h))))
	}
	return in
}

// args returns the RetentionArgs of both backends for a form and variant.
func (in retInputs) args(f retForm, v retVariant) (dev, host api.RetentionArgs) {
	dev = api.RetentionArgs{Q: in.q.dev, K: in.k.dev, V: in.v.dev, Gamma: in.gamma, Offset: v.offset, Chunk: f.chunk}
	host = api.RetentionArgs{Q: in.q.host, K: in.k.host, V: in.v.host, Gamma: in.gamma, Offset: v.offset, Chunk: f.chunk}
	if v.s0 {
		dev.S0, host.S0 = in.s0.dev, in.s0.host
	}
	return dev, host
}

// retClose fails t unless got is within tol of want (relative to want's
// largest magnitude).
func retClose(t *testing.T, what string, got, want api.Tensor, tol float64) {
	t.Helper()
	g, w := api.Float32s(got), api.Float32s(want)
	if len(g) != len(w) {
		t.Fatalf("%s: %d values, want %d", what, len(g), len(w))
	}
	if e := maxRel(g, w); e > tol || math.IsNaN(e) {
		t.Errorf("%s differs from the CPU backend's by %g (relative), tolerance %g", what, e, tol)
	}
}

// retLaunched fails t unless kernel was launched since before.
func retLaunched(t *testing.T, b *Backend, before map[string]int, what string, kernels ...string) {
	t.Helper()
	after := fakeOf(b).launched()
	for _, k := range kernels {
		if after[k] == before[k] {
			t.Errorf("%s: %s not launched", what, k)
		}
	}
}

// retKernel is the kernel that shows a form ran on the device (not empty).
func retKernel(s retShape, f retForm) string {
	switch {
	case f.form == api.RetentionParallel:
		return "ds_retention_parallel_scores_f32"
	case f.form == api.RetentionRecurrent && s.dk <= 512:
		return "ds_retention_recurrent_f32"
	}
	return "ds_retention_decay_mask_f32"
}

// checkRetention runs one forward call on both backends and compares o and
// sT. o starts as junk, which must be overwritten.
func checkRetention(t *testing.T, b *Backend, c api.Backend, rng *rand.Rand, s retShape, in retInputs, f retForm, v retVariant) {
	t.Helper()
	what := fmt.Sprintf("%v %s %v", s, f.name, v)
	da, ha := in.args(f, v)
	o := retRandom(b, c, rng, s.B, s.H, s.T, s.dv)
	var sT retPair
	switch {
	case v.alias: // a copy of S0, advanced in place
		sT = retPair{b.Alloc(api.F32, s.B, s.H, s.dk, s.dv), c.Alloc(api.F32, s.B, s.H, s.dk, s.dv)}
		b.Copy(sT.dev, in.s0.dev)
		c.Copy(sT.host, in.s0.host)
		da.S0, ha.S0 = sT.dev, sT.host
	case v.state:
		sT = retRandom(b, c, rng, s.B, s.H, s.dk, s.dv)
	}
	before := fakeOf(b).launched()
	b.Retention(f.form, o.dev, sT.dev, da)
	c.(api.RetentionKernels).Retention(f.form, o.host, sT.host, ha)
	retClose(t, what+": o", o.dev, o.host, retOutTol)
	if sT.dev != nil {
		retClose(t, what+": sT", sT.dev, sT.host, retOutTol)
	}
	if s.T > 0 {
		retLaunched(t, b, before, what, retKernel(s, f))
	}
	if f.form != api.RetentionRecurrent && s.T > 0 {
		retLaunched(t, b, before, what, "cublasSgemm")
	}
}

// checkRetentionGrad runs one gradient call on both backends and compares
// the gradients asked for (all but drop: "Q", "K", "V", "S0" or ""). The
// gradients start as junk, which must be overwritten.
func checkRetentionGrad(t *testing.T, b *Backend, c api.Backend, rng *rand.Rand, s retShape, in retInputs, f retForm, v retVariant, drop string) {
	t.Helper()
	what := fmt.Sprintf("%v %s %v without d%s", s, f.name, v, drop)
	da, ha := in.args(f, v)
	do := retRandom(b, c, rng, s.B, s.H, s.T, s.dv)
	var dsT retPair
	if v.state {
		dsT = retRandom(b, c, rng, s.B, s.H, s.dk, s.dv)
	}
	want := func(name string, shape ...int) retPair {
		if name == drop || name == "S0" && !v.s0 {
			return retPair{}
		}
		return retRandom(b, c, rng, shape...)
	}
	dq, dk := want("Q", s.B, s.H, s.T, s.dk), want("K", s.B, s.H, s.T, s.dk)
	dv, ds0 := want("V", s.B, s.H, s.T, s.dv), want("S0", s.B, s.H, s.dk, s.dv)
	before := fakeOf(b).launched()
	b.RetentionGrad(f.form, api.RetentionGrads{Q: dq.dev, K: dk.dev, V: dv.dev, S0: ds0.dev}, da, do.dev, dsT.dev)
	c.(api.RetentionKernels).RetentionGrad(f.form, api.RetentionGrads{Q: dq.host, K: dk.host, V: dv.host, S0: ds0.host}, ha, do.host, dsT.host)
	for _, g := range []struct {
		name string
		p    retPair
	}{{"dQ", dq}, {"dK", dk}, {"dV", dv}, {"dS0", ds0}} {
		if g.p.dev != nil {
			retClose(t, what+": "+g.name, g.p.dev, g.p.host, retGradTol)
		}
	}
	if s.T > 0 {
		kernel := "ds_retention_decay_mask_f32"
		if f.form == api.RetentionParallel {
			kernel = "ds_retention_parallel_scores_f32"
		}
		retLaunched(t, b, before, what, kernel, "cublasSgemm")
	}
}

// TestRetentionForward checks Retention in every form on the fake device
// against the CPU backend: every shape of retShapes, chunk lengths that
// divide T and that do not, with and without S0 and sT, offsets 0 and 5,
// sT in S0's memory; the expected kernels launched, no host round-trip.
func TestRetentionForward(t *testing.T) {
	b, c := retBackends(t)
	rng := rand.New(rand.NewPCG(1, 17))
	for _, s := range retShapes() {
		in := newRetInputs(b, c, rng, s)
		for _, f := range retForms(s.T) {
			for _, v := range retVariants(f.form, false) {
				checkRetention(t, b, c, rng, s, in, f, v)
			}
		}
	}
	if h := b.HostOps(); len(h) != 0 {
		t.Errorf("host round-trips: %v", h)
	}
}

// TestRetentionGrad checks RetentionGrad in every form on the fake device
// against the CPU backend, as TestRetentionForward, with and without dsT,
// each gradient left out in turn.
func TestRetentionGrad(t *testing.T) {
	b, c := retBackends(t)
	rng := rand.New(rand.NewPCG(2, 17))
	drops := []string{"Q", "K", "V", "S0"}
	for si, s := range retShapes() {
		in := newRetInputs(b, c, rng, s)
		for _, f := range retForms(s.T) {
			for vi, v := range retVariants(f.form, true) {
				checkRetentionGrad(t, b, c, rng, s, in, f, v, "")
				checkRetentionGrad(t, b, c, rng, s, in, f, v, drops[(si+vi)%len(drops)])
			}
		}
	}
	if h := b.HostOps(); len(h) != 0 {
		t.Errorf("host round-trips: %v", h)
	}
}

// TestRetentionPasses runs the forms and gradients with the scratch bound
// at one head a pass (several passes over the heads, with offset
// pointers into every tensor and the gamma array).
func TestRetentionPasses(t *testing.T) {
	old := retScratchFloats
	retScratchFloats = 1
	t.Cleanup(func() { retScratchFloats = old })
	b, c := retBackends(t)
	rng := rand.New(rand.NewPCG(3, 17))
	s := retShape{B: 2, H: 3, T: 9, dk: 5, dv: 4}
	in := newRetInputs(b, c, rng, s)
	for _, f := range retForms(s.T) {
		for _, v := range retVariants(f.form, false) {
			checkRetention(t, b, c, rng, s, in, f, v)
		}
		for _, v := range retVariants(f.form, true) {
			checkRetentionGrad(t, b, c, rng, s, in, f, v, "")
		}
	}
}

// TestRetentionWideKey checks the recurrent form with dk beyond
// ds_retention_recurrent_f32's 512: it runs on the device by the chunkwise
// algorithm, not on the host.
func TestRetentionWideKey(t *testing.T) {
	b, c := retBackends(t)
	rng := rand.New(rand.NewPCG(4, 17))
	s := retShape{B: 1, H: 2, T: 5, dk: 520, dv: 3}
	in := newRetInputs(b, c, rng, s)
	f := retForm{"recurrent", api.RetentionRecurrent, 0}
	before := fakeOf(b).launched()
	for _, v := range []retVariant{{state: true}, {s0: true, offset: 3, state: true}, {s0: true, offset: 3, state: true, alias: true}} {
		checkRetention(t, b, c, rng, s, in, f, v)
	}
	if n := fakeOf(b).launched()["ds_retention_recurrent_f32"] - before["ds_retention_recurrent_f32"]; n != 0 {
		t.Errorf("ds_retention_recurrent_f32 launched %d times for dk = %d", n, s.dk)
	}
}

// TestRetentionScratch checks that a call gives its scratch back: the
// bytes in use after a forward and a gradient call are those before (after
// a first pair of calls, which keeps the decays on the device: constF32).
func TestRetentionScratch(t *testing.T) {
	b, c := retBackends(t)
	rng := rand.New(rand.NewPCG(5, 17))
	s := retShape{B: 2, H: 3, T: 9, dk: 4, dv: 3}
	in := newRetInputs(b, c, rng, s)
	o := b.Alloc(api.F32, s.B, s.H, s.T, s.dv)
	dq := b.Alloc(api.F32, s.B, s.H, s.T, s.dk)
	for _, f := range retForms(s.T) {
		da, _ := in.args(f, retVariant{})
		call := func() {
			b.Retention(f.form, o, nil, da)
			b.RetentionGrad(f.form, api.RetentionGrads{Q: dq}, da, o, nil)
		}
		call()
		inUse := b.MemStats().InUse
		call()
		if got := b.MemStats().InUse; got != inUse {
			t.Errorf("%s: %d bytes in use after the calls, %d before", f.name, got, inUse)
		}
	}
}
