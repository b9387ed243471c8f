package hgrn

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// tinyConfig is a small model with odd sizes, four layers so that dense
// links of m = 2 reach both one and two layers down.
func tinyConfig(denseM int, tie bool) *Config {
	c := DefaultConfig()
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize = 37, 12, 4, 20
	c.DenseM, c.TieWordEmbeddings = denseM, tie
	return c
}

// variants are the configurations every model test runs on.
func variants() map[string]*Config {
	return map[string]*Config{
		"m0-tied":   tinyConfig(0, true),
		"m2-untied": tinyConfig(2, false),
		"m1-tied":   tinyConfig(1, true),
	}
}

// newTiny builds cfg on a 2-thread CPU backend and overwrites its
// parameters through WriteParams with values larger and more varied than
// the initialisation's (embeddings and head N(0,1), projections N(0,
// 1/fan_in), norm weights 1 + N(0, 0.2²)), so that every part of the
// model moves the logits well above float32 rounding.
func newTiny(t testing.TB, cfg *Config, seed uint64) *Model {
	t.Helper()
	m, err := New(cfg, cpu.New(api.BackendOptions{Threads: 2}), int64(seed))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 77))
	var values []api.HostTensor
	for _, p := range m.Params() {
		v := make([]float32, p.Shape.NumElements())
		for i := range v {
			switch {
			case strings.HasSuffix(p.Name, "norm.weight"):
				v[i] = float32(1 + 0.2*r.NormFloat64())
			case strings.Contains(p.Name, "embed_tokens") || strings.HasPrefix(p.Name, "lm_head"):
				v[i] = float32(r.NormFloat64())
			default:
				v[i] = float32(r.NormFloat64() / math.Sqrt(float64(p.Shape[1])))
			}
		}
		raw := make([]byte, 4*len(v))
		if err := api.EncodeFloat32(raw, api.F32, v); err != nil {
			t.Fatal(err)
		}
		values = append(values, api.HostTensor{Name: p.Name, DType: p.DType, Shape: p.Shape, Data: raw})
	}
	if err := m.WriteParams(context.Background(), values); err != nil {
		t.Fatal(err)
	}
	return m
}

func randomIDs(r *rand.Rand, batch, T, vocab int) [][]int32 {
	ids := make([][]int32, batch)
	for b := range ids {
		for range T {
			ids[b] = append(ids[b], int32(r.IntN(vocab)))
		}
	}
	return ids
}

// tokenErr returns, over the tokens of got and want (both [B,T,V] flat),
// the largest max_v |got-want| / max_v |want|: the relative error of the
// worst token.
func tokenErr(got []float32, want []float64, V int) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	worst := 0.0
	for i := 0; i < len(want); i += V {
		var diff, scale float64
		for k := i; k < i+V; k++ {
			diff = max(diff, math.Abs(float64(got[k])-want[k]))
			scale = max(scale, math.Abs(want[k]))
		}
		e := diff / scale
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		worst = max(worst, e)
	}
	return worst
}

func widen(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func flatten(x [][][]float64) []float64 {
	var out []float64
	for _, seq := range x {
		for _, tok := range seq {
			out = append(out, tok...)
		}
	}
	return out
}

// TestReferenceParity checks the parallel form against the float64
// reference (reference_test.go) on 2 sequences of 19 tokens, to 1e-4
// relative per token (max |error| over max |logit|); float32 rounding
// gives about 1e-6 here. It also checks that the dense link, where there
// is one, changes the logits by far more than the tolerance, so that the
// comparison covers it.
func TestReferenceParity(t *testing.T) {
	const tol = 1e-4
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m := newTiny(t, cfg, 3)
			ids := randomIDs(rand.New(rand.NewPCG(4, 5)), 2, 19, cfg.VocabSize)
			got, err := m.Forward(context.Background(), ids, api.Form{})
			if err != nil {
				t.Fatal(err)
			}
			if s := got.Shape(); !s.Equal(api.Shape{2, 19, cfg.VocabSize}) {
				t.Fatalf("logits shape %v", s)
			}
			r := newRef(t, m)
			want := flatten(r.logits(ids))
			e := tokenErr(api.Float32s(got), want, cfg.VocabSize)
			t.Logf("relative error %.3g", e)
			if !(e <= tol) {
				t.Fatalf("parallel form vs float64 reference: relative error %.3g > %g", e, tol)
			}
			if cfg.DenseM > 0 {
				off := *r
				c := *cfg
				c.DenseM = 0
				off.cfg = &c
				if d := tokenErr(api.Float32s(got), flatten(off.logits(ids)), cfg.VocabSize); !(d > 100*tol) {
					t.Errorf("the dense link moves the logits by only %.3g", d)
				}
			}
		})
	}
}

// TestFormsAgree checks that the chunkwise form (blocks of 3), the
// recurrent form, Steps from an empty state, and Prefills (parallel and
// chunkwise) of the first 7 tokens followed by Steps give the parallel
// form's logits to 1e-5 relative per token, on 2 sequences of 21 tokens
// (not a power of two, so the scan's padding is exercised), and that the
// state counts every token.
func TestFormsAgree(t *testing.T) {
	const (
		tol           = 1e-5
		B, T, split   = 2, 21, 7
		chunk, chunk2 = 3, 2
	)
	ctx := context.Background()
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m := newTiny(t, cfg, 11)
			V := cfg.VocabSize
			ids := randomIDs(rand.New(rand.NewPCG(6, 7)), B, T, V)
			par, err := m.Forward(ctx, ids, api.Form{})
			if err != nil {
				t.Fatal(err)
			}
			want := widen(api.Float32s(par))
			worst := 0.0
			check := func(what string, got []float32, from, n int) {
				t.Helper()
				for b := range B {
					g := got[b*n*V : (b+1)*n*V]
					w := want[(b*T+from)*V : (b*T+from+n)*V]
					e := tokenErr(g, w, V)
					if !(e <= tol) {
						t.Fatalf("%s: sequence %d, tokens %d..%d: relative error %.3g > %g", what, b, from, from+n-1, e, tol)
					}
					worst = max(worst, e)
				}
			}
			defer func() { t.Logf("worst relative error %.3g", worst) }()
			for _, f := range []api.Form{{Mode: api.Chunkwise, Chunk: chunk}, {Mode: api.Recurrent}} {
				got, err := m.Forward(ctx, ids, f)
				if err != nil {
					t.Fatal(err)
				}
				check("Forward "+f.Mode.String(), api.Float32s(got), 0, T)
			}
			steps := func(what string, s api.State, from int) {
				t.Helper()
				tok := make([]int32, B)
				for ti := from; ti < T; ti++ {
					for b := range B {
						tok[b] = ids[b][ti]
					}
					logits, err := m.Step(ctx, s, tok)
					if err != nil {
						t.Fatal(err)
					}
					check(what, api.Float32s(logits), ti, 1)
				}
				if s.Len() != T {
					t.Errorf("%s: state length %d, want %d", what, s.Len(), T)
				}
			}
			s, err := m.NewState(B)
			if err != nil {
				t.Fatal(err)
			}
			steps("steps", s, 0)
			head := make([][]int32, B)
			for b := range B {
				head[b] = ids[b][:split]
			}
			for _, f := range []api.Form{{}, {Mode: api.Chunkwise, Chunk: chunk2}} {
				// Reset the used state rather than make a new one: Reset
				// must empty it.
				if err := s.Reset(); err != nil {
					t.Fatal(err)
				}
				pre, err := m.Prefill(ctx, s, head, f)
				if err != nil {
					t.Fatal(err)
				}
				check("prefill "+f.Mode.String(), api.Float32s(pre), 0, split)
				steps("prefill "+f.Mode.String()+" + steps", s, split)
			}
		})
	}
}

// TestScanEdges checks the parallel form on sequences of 1, 2 and 8 tokens
// (the scan's edge cases: no level, one level, a power of two) against the
// reference, to 1e-4 relative.
func TestScanEdges(t *testing.T) {
	cfg := tinyConfig(2, true)
	m := newTiny(t, cfg, 8)
	r := newRef(t, m)
	for _, T := range []int{1, 2, 8} {
		ids := randomIDs(rand.New(rand.NewPCG(uint64(T), 1)), 3, T, cfg.VocabSize)
		got, err := m.Forward(context.Background(), ids, api.Form{})
		if err != nil {
			t.Fatal(err)
		}
		if e := tokenErr(api.Float32s(got), flatten(r.logits(ids)), cfg.VocabSize); !(e <= 1e-4) {
			t.Errorf("T = %d: relative error %.3g > 1e-4", T, e)
		}
	}
}

// TestGradients checks LossAndGrad against central finite differences of
// the float64 reference's loss (step 1e-4, whose truncation and rounding
// errors are far below the tolerance), for every parameter: the
// derivative along the gradient must be |g| and the derivative along a
// random direction d must be g·d, each to 1e-4 relative to |g| (|g|·|d|
// for the random direction). The gradient is float32, the reference
// float64: their difference is about 1e-6 relative here. Every parameter must
// receive a nonzero gradient; one target is ignored.
func TestGradients(t *testing.T) {
	const (
		tol = 1e-4
		h   = 1e-4
	)
	ctx := context.Background()
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m := newTiny(t, cfg, 21)
			rnd := rand.New(rand.NewPCG(9, 9))
			batch := api.Batch{Inputs: randomIDs(rnd, 2, 9, cfg.VocabSize), Targets: randomIDs(rnd, 2, 9, cfg.VocabSize)}
			batch.Targets[1][4] = api.IgnoreIndex
			m.ZeroGrad()
			loss, err := m.LossAndGrad(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			r := newRef(t, m)
			if want := r.loss(batch); math.Abs(loss-want) > 1e-5*math.Abs(want) {
				t.Errorf("loss %.8g, reference %.8g", loss, want)
			}
			worst := 0.0
			defer func() { t.Logf("worst relative error %.3g", worst) }()
			for _, g := range m.Grads() {
				grad := widen(api.Float32s(g.Value))
				theta := r.p[g.Name]
				gn := norm(grad)
				if !(gn > 0) {
					t.Errorf("%s: gradient is zero or NaN", g.Name)
					continue
				}
				d := make([]float64, len(grad))
				for i := range d {
					d[i] = rnd.NormFloat64()
				}
				for _, dir := range []struct {
					what  string
					v     []float64
					want  float64 // g·v
					scale float64 // |g|·|v|
				}{
					{"gradient", grad, gn * gn, gn * gn},
					{"random", d, dot(grad, d), gn * norm(d)},
				} {
					// d loss(θ + ε v/|v|)/dε at 0, by central differences.
					vn := norm(dir.v)
					at := func(eps float64) float64 {
						moved := make([]float64, len(theta))
						for i := range theta {
							moved[i] = theta[i] + eps*dir.v[i]/vn
						}
						r.p[g.Name] = moved
						return r.loss(batch)
					}
					fd := (at(h) - at(-h)) / (2 * h)
					r.p[g.Name] = theta
					want := dir.want / vn
					e := math.Abs(fd-want) / (dir.scale / vn)
					worst = max(worst, e)
					if !(e <= tol) {
						t.Errorf("%s along the %s direction: LossAndGrad gives %.8g, finite differences %.8g (relative error %.3g > %g)", g.Name, dir.what, want, fd, e, tol)
					}
				}
			}
		})
	}
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func norm(a []float64) float64 { return math.Sqrt(dot(a, a)) }

// TestTrainingLowersLoss runs 40 steps of plain SGD (learning rate 0.5) on
// one repeated batch with the model's own initialisation and requires the
// loss to fall below half its first value, with every step's loss finite.
func TestTrainingLowersLoss(t *testing.T) {
	ctx := context.Background()
	cfg := tinyConfig(2, true)
	m, err := New(cfg, cpu.New(api.BackendOptions{Threads: 2}), 1)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 3))
	batch := api.Batch{Inputs: randomIDs(rnd, 2, 12, cfg.VocabSize), Targets: randomIDs(rnd, 2, 12, cfg.VocabSize)}
	b := m.Backend()
	var first, last float64
	for step := range 40 {
		m.ZeroGrad()
		loss, err := m.LossAndGrad(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			t.Fatalf("step %d: loss %v", step, loss)
		}
		if step == 0 {
			first = loss
		}
		last = loss
		params, grads := m.Parameters(), m.Grads()
		for i, p := range params {
			b.Affine(grads[i].Value, grads[i].Value, -0.5, 0)
			b.Binary(api.OpAdd, p.Value, p.Value, grads[i].Value)
		}
	}
	t.Logf("loss %.4f -> %.4f", first, last)
	if !(last < first/2) {
		t.Errorf("loss %.4f -> %.4f after 40 SGD steps: want below half", first, last)
	}
}

// TestStepAllocs checks that Step allocates nothing once the state's
// buffers exist (without the race detector).
func TestStepAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	m := newTiny(t, tinyConfig(2, false), 2)
	ctx := context.Background()
	s, err := m.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{3, 4}
	if _, err := m.Step(ctx, s, ids); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := m.Step(ctx, s, ids); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per step", allocs)
	}
}

// TestInputErrors checks that bad ids, batches and states give errors of
// the classes the built-in architectures use.
func TestInputErrors(t *testing.T) {
	ctx := context.Background()
	cfg := tinyConfig(1, true)
	m := newTiny(t, cfg, 1)
	other := newTiny(t, cfg, 1)
	s, err := m.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	V := int32(cfg.VocabSize)
	for name, tc := range map[string]struct {
		call func() error
		want error
	}{
		"id too large":  {func() error { _, err := m.Forward(ctx, [][]int32{{1, V}}, api.Form{}); return err }, api.ErrOutOfRange},
		"negative id":   {func() error { _, err := m.Forward(ctx, [][]int32{{-1}}, api.Form{}); return err }, api.ErrOutOfRange},
		"ragged":        {func() error { _, err := m.Forward(ctx, [][]int32{{1, 2}, {1}}, api.Form{}); return err }, api.ErrShape},
		"empty batch":   {func() error { _, err := m.Forward(ctx, nil, api.Form{}); return err }, api.ErrShape},
		"bad form":      {func() error { _, err := m.Forward(ctx, [][]int32{{1}}, api.Form{Chunk: -1}); return err }, api.ErrConfig},
		"step id":       {func() error { _, err := m.Step(ctx, s, []int32{0, V}); return err }, api.ErrOutOfRange},
		"step batch":    {func() error { _, err := m.Step(ctx, s, []int32{0}); return err }, api.ErrShape},
		"foreign state": {func() error { _, err := m.Step(ctx, foreign, []int32{0, 1}); return err }, api.ErrShape},
		"prefill batch": {func() error { _, err := m.Prefill(ctx, s, [][]int32{{1}}, api.Form{}); return err }, api.ErrShape},
		"no sequences":  {func() error { _, err := m.NewState(0); return err }, api.ErrShape},
		"target rows": {func() error {
			_, err := m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1}}})
			return err
		}, api.ErrShape},
		"target value": {func() error {
			_, err := m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1, V}}})
			return err
		}, api.ErrOutOfRange},
		"unknown parameter": {func() error { _, err := m.ReadParams(ctx, []string{"nope"}); return err }, api.ErrNotFound},
	} {
		if err := tc.call(); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
	if s.Len() != 0 {
		t.Errorf("failed calls advanced the state to %d tokens", s.Len())
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Forward(cancelled, [][]int32{{1}}, api.Form{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: got %v", err)
	}
}

// TestRegistry builds the architecture through the registry as the
// toolkit does: the same seed gives the same weights, another seed others,
// Zeros gives zeros, and a config of another architecture is refused.
func TestRegistry(t *testing.T) {
	ctx := context.Background()
	a, err := api.LookupArchitecture(Name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig(2, false)
	build := func(opts api.BuildOptions) api.Model {
		t.Helper()
		m, err := a.New(ctx, cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	byName := func(m api.Model, name string) []float32 {
		t.Helper()
		hts, err := m.ReadParams(ctx, []string{name})
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, hts[0].Shape.NumElements())
		if err := api.DecodeFloat32(v, hts[0].DType, hts[0].Data); err != nil {
			t.Fatal(err)
		}
		return v
	}
	const w = "model.layers.1.attn.f_proj.weight"
	m1, m2 := build(api.BuildOptions{Seed: 5}), build(api.BuildOptions{Seed: 5})
	m3, z := build(api.BuildOptions{Seed: 6}), build(api.BuildOptions{Seed: 5, Zeros: true})
	if !equal(byName(m1, w), byName(m2, w)) {
		t.Error("the same seed gave different weights")
	}
	if equal(byName(m1, w), byName(m3, w)) {
		t.Error("different seeds gave the same weights")
	}
	for _, v := range byName(z, w) {
		if v != 0 {
			t.Fatal("Zeros gave nonzero weights")
		}
	}
	info := m1.Info()
	if info.Arch != Name || !info.Trainable || !info.Local || !info.Supports(api.Chunkwise) || !info.Supports(api.Recurrent) || !info.Supports(api.Parallel) {
		t.Errorf("info %+v", info)
	}
	if _, ok := m1.(api.Trainable); !ok {
		t.Error("the model is not api.Trainable")
	}
	// Parameter names and shapes: the documented set, dense links only
	// where a layer has layers below.
	want := map[string]api.Shape{
		"model.embed_tokens.weight":              {37, 12},
		"model.layers.0.attn.f_proj.weight":      {12, 12},
		"model.layers.1.attn.dense_sel.1.weight": {12, 12},
		"model.layers.3.attn.dense_sel.2.weight": {12, 12},
		"model.layers.3.mlp.down_proj.weight":    {12, 20},
		"model.layers.2.mlp.up_proj.weight":      {20, 12},
		"model.norm.weight":                      {12},
		"lm_head.weight":                         {37, 12},
	}
	have := map[string]api.Shape{}
	for _, p := range m1.Params() {
		have[p.Name] = p.Shape
	}
	for name, shape := range want {
		if !have[name].Equal(shape) {
			t.Errorf("parameter %s: shape %v, want %v", name, have[name], shape)
		}
	}
	for _, absent := range []string{"model.layers.0.attn.dense_sel.1.weight", "model.layers.1.attn.dense_sel.2.weight", "model.layers.3.attn.dense_sel.3.weight"} {
		if _, ok := have[absent]; ok {
			t.Errorf("parameter %s should not exist", absent)
		}
	}
	// 4 layers of 3 norms, 4 mixer and 3 MLP projections, 1+2+2 links,
	// the embedding, the final norm and the head.
	if n := len(have); n != 4*10+5+3 {
		t.Errorf("%d parameters, want %d", n, 4*10+5+3)
	}
	if _, err := a.New(ctx, otherConfig{}, api.BuildOptions{}); !errors.Is(err, api.ErrConfig) {
		t.Errorf("foreign config: got %v", err)
	}
	bad := *cfg
	bad.HiddenSize = 0
	if _, err := a.New(ctx, &bad, api.BuildOptions{}); !errors.Is(err, api.ErrConfig) {
		t.Errorf("invalid config: got %v", err)
	}
}

type otherConfig struct{}

func (otherConfig) ArchName() string { return "other" }
func (otherConfig) Vocab() int       { return 1 }
func (otherConfig) Validate() error  { return nil }

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
