package retnet

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/dense"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// tinyConfig is a small model with odd sizes: RetNet with 3 heads of key
// width 8 and value width 12; DenseRetNet (m previous layers) with 2 heads
// of key width 8 and value width 32, selector bottlenecks 4 (keys) and 8
// (values).
func tinyConfig(arch string, m int) *Config {
	c := DefaultConfig(arch)
	c.VocabSize, c.NumHiddenLayers = 53, 3
	if arch == NameRetNet {
		c.HiddenSize, c.NumAttentionHeads, c.QueryKeyDim, c.ValueDim, c.FFNDim = 24, 3, 24, 36, 40
		return c
	}
	c.HiddenSize, c.NumAttentionHeads, c.QueryKeyDim, c.ValueDim = 32, 2, 16, 64
	c.Dense = dense.Defaults(m)
	c.Dense.GateRatio, c.DenseVGateRatio = 8, 4
	return c
}

// variants returns the configurations every form test covers: RetNet
// (untied, and tied with scaled embeddings) and DenseRetNet at m = 0, 1, 2.
func variants() map[string]*Config {
	tied := tinyConfig(NameRetNet, 0)
	tied.TieWordEmbeddings, tied.ScaleEmbedding = true, true
	v := map[string]*Config{"retnet": tinyConfig(NameRetNet, 0), "retnet-tied-scaled": tied}
	for m := range 3 {
		v[fmt.Sprintf("denseretnet-m%d", m)] = tinyConfig(NameDenseRetNet, m)
	}
	return v
}

// newTestModel builds cfg's model and redraws its parameters so that every
// activation is of order one: linear weights U(±sqrt(3/fan_in)) (unit
// variance out of unit-variance inputs), norm weights U(0.5, 1.5), the
// embedding N(0, 1). The value projections (v_proj, to_hidden) are drawn
// four times larger, so that the retention outputs stay well above the
// group norm's eps, the one place where the forms differ (see formsTol).
// With the reference initialisations (N(0, 0.02) for DenseRetNet) eps
// would dominate the outputs and hide errors.
func newTestModel(t testing.TB, cfg *Config, b api.Backend, seed uint64) *Model {
	t.Helper()
	m, err := New(cfg, b, int64(seed))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 17))
	for _, p := range m.Parameters() {
		s := p.Value.Shape()
		vals := make([]float32, s.NumElements())
		for i := range vals {
			switch {
			case len(s) == 1:
				vals[i] = float32(0.5 + r.Float64())
			case strings.HasSuffix(p.Name, "embed_tokens.weight"):
				vals[i] = float32(r.NormFloat64())
			default:
				a := math.Sqrt(3 / float64(s[1]))
				if strings.Contains(p.Name, "v_proj") || strings.Contains(p.Name, "to_hidden") {
					a *= 4
				}
				vals[i] = float32(a * (2*r.Float64() - 1))
			}
		}
		b.Copy(p.Value, api.FromFloat32s(b, vals, s...))
	}
	return m
}

// formsTol is the agreement asked of the forms on the logits (max abs
// difference over max abs value, per token). The forms differ by a positive
// scalar per row before the group norm, which cancels only up to its eps
// (measured: up to 3e-5 at eps 1e-6), and by rounding (measured: 3e-6).
// With eps 1e-12 only rounding remains, and exactTol applies.
const (
	formsTol = 5e-5
	exactTol = 1e-5
)

// TestFormsAgree checks, for each variant over 64 tokens: the chunkwise
// form with chunks of 1, 3 and 16 tokens, recurrent Steps from an empty
// state, and a prefill of 40 tokens followed by 24 Steps, all against the
// parallel form's logits; once with the config's eps (1e-6) and once with
// eps 1e-12.
func TestFormsAgree(t *testing.T) {
	ctx := context.Background()
	for name, variant := range variants() {
		for _, eps := range []float64{1e-6, 1e-12} {
			cfg := *variant
			cfg.RMSNormEps = api.ConfigFloat(eps)
			tol := formsTol
			if eps < 1e-9 {
				tol = exactTol
			}
			t.Run(fmt.Sprintf("%s/eps=%g", name, eps), func(t *testing.T) {
				checkForms(t, ctx, &cfg, tol)
			})
		}
	}
}

// checkForms runs TestFormsAgree's comparisons for one configuration: every
// token's logits must be within tol of the parallel form's.
func checkForms(t *testing.T, ctx context.Context, cfg *Config, tol float64) {
	m := newTestModel(t, cfg, cpu.New(api.BackendOptions{Threads: 2}), 7)
	const B, T, split = 2, 64, 40
	ids := modeltest.RandomIDs(rand.New(rand.NewPCG(1, 2)), B, T, cfg.VocabSize)
	par, err := m.Forward(ctx, ids, api.Form{})
	if err != nil {
		t.Fatal(err)
	}
	l := &modeltest.Logits{Want: api.Float32s(par), B: B, T: T, V: cfg.VocabSize, Tol: tol}
	for _, chunk := range []int{1, 3, 16} {
		got, err := m.ForwardChunkwise(ctx, ids, chunk)
		if err != nil {
			t.Fatal(err)
		}
		l.Check(t, fmt.Sprintf("chunkwise %d", chunk), api.Float32s(got), 0, T)
		// The same form a window of two chunks at a time, from a State.
		s, err := m.NewState(B)
		if err != nil {
			t.Fatal(err)
		}
		for from := 0; from < T; from += 2 * chunk {
			to := min(from+2*chunk, T)
			window := make([][]int32, B)
			for b := range window {
				window[b] = ids[b][from:to]
			}
			out, err := m.PrefillChunkwise(ctx, s, window, chunk)
			if err != nil {
				t.Fatal(err)
			}
			l.Check(t, fmt.Sprintf("chunkwise %d in windows", chunk), api.Float32s(out), from, to-from)
		}
	}
	modeltest.CheckRecurrentForms(t, m, ids, split, l)
	modeltest.CheckForwardInto(t, m, ids, l.Want)
	t.Logf("largest relative difference from the parallel form: %.3g", l.Worst)
}
