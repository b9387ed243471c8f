package retnet

import (
	"context"
	"math"
	"math/rand/v2"
	"regexp"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// unusedParams matches the parameters no gradient reaches: DenseRetNet's
// links into layer 0 (the official checkpoints carry them, the code never
// uses them) and, at m = 0, every selector (only the links' norms apply).
func unusedParams(c *Config) *regexp.Regexp {
	switch {
	case !c.gau():
		return regexp.MustCompile(`^$`)
	case c.Dense.M == 0:
		return regexp.MustCompile(`layers\.0\.self_attn\.[kv]_(select|norm)|[kv]_select`)
	}
	return regexp.MustCompile(`layers\.0\.self_attn\.[kv]_(select|norm)`)
}

// checkedParams matches the parameters whose gradients are checked against
// finite differences: the embedding, every projection of layer 1, the
// dense links and norms of layers 1 and 2, the FFN, the final norm and the
// output projection.
var checkedParams = regexp.MustCompile(`embed_tokens|layers\.1\.(retention|ffn|self_attn)\.|layers\.2\.self_attn\.[kv]_(select|norm)|layer_norm\.weight$|model\.norm|output_projection|lm_head`)

// TestGradientsFiniteDifference checks LossAndGrad of every variant against
// central finite differences of the loss along the gradient: for a
// parameter with gradient g, the derivative of the loss in the direction
// g/|g| is |g|. The gradients are checked exactly against PyTorch by the
// parity tests; this one checks the model's wiring on every variant, in
// float32. Every parameter but the unused ones must receive a gradient, and
// those must receive none.
//
// The step is short (3e-4) because RetNet's loss is nearly non-smooth in
// places: when a head's retention output for a token passes through zero
// (the first token's is q_0.k_0 v_0), the group norm flips its sign within
// a distance of about sqrt(eps). Float32 rounding then limits the finite
// differences to about 1% (measured over ten seeds: at most 1.5% but for
// one direction in fifty that crossed such a kink), hence the 3% tolerance.
func TestGradientsFiniteDifference(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(api.BackendOptions{Threads: 1})
			m := newTestModel(t, cfg, b, 3)
			r := rand.New(rand.NewPCG(9, 9))
			batch := api.Batch{Inputs: modeltest.RandomIDs(r, 2, 9, cfg.VocabSize), Targets: modeltest.RandomIDs(r, 2, 9, cfg.VocabSize)}
			batch.Targets[1][4] = api.IgnoreIndex
			m.ZeroGrad()
			if _, err := m.LossAndGrad(ctx, batch); err != nil {
				t.Fatal(err)
			}
			unused := unusedParams(cfg)
			grads := map[string][]float32{}
			norms := map[string]float64{}
			for _, g := range m.Grads() {
				v := api.Float32s(g.Value)
				var norm float64
				for _, x := range v {
					norm += float64(x) * float64(x)
				}
				norm = math.Sqrt(norm)
				switch {
				case unused.MatchString(g.Name) && norm != 0:
					t.Errorf("%s: unused, but its gradient has norm %g", g.Name, norm)
				case !unused.MatchString(g.Name) && !(norm > 0):
					t.Errorf("%s: gradient is zero or NaN", g.Name)
				}
				grads[g.Name], norms[g.Name] = v, norm
			}
			loss := func() float64 {
				m.ZeroGrad()
				l, err := m.LossAndGrad(ctx, batch)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			checked, worst := 0, 0.0
			for _, p := range m.Parameters() {
				if !checkedParams.MatchString(p.Name) || unused.MatchString(p.Name) {
					continue
				}
				checked++
				g, gn := grads[p.Name], norms[p.Name]
				orig := api.Float32s(p.Value)
				const h = 3e-4 // see above
				set := func(step float64) {
					moved := make([]float32, len(orig))
					for k := range orig {
						moved[k] = orig[k] + float32(step*float64(g[k])/gn)
					}
					b.Copy(p.Value, api.FromFloat32s(b, moved, p.Value.Shape()...))
				}
				set(h)
				up := loss()
				set(-h)
				down := loss()
				set(0)
				fd := (up - down) / (2 * h)
				worst = max(worst, math.Abs(fd-gn)/gn)
				if math.Abs(fd-gn) > 0.03*gn {
					t.Errorf("%s: |gradient| %.6g, directional finite difference %.6g", p.Name, gn, fd)
				}
			}
			t.Logf("%d parameters checked, largest relative difference %.3g", checked, worst)
			if checked < 6 {
				t.Errorf("only %d parameters checked", checked)
			}
		})
	}
}

// TestPadTokenGradient checks PyTorch's padding_idx rule: with a padding
// token in the inputs, its embedding row receives no gradient from the
// lookup, the logits are unchanged, and a tied output projection still
// contributes to that row.
func TestPadTokenGradient(t *testing.T) {
	ctx := context.Background()
	const pad = 3
	for _, tied := range []bool{false, true} {
		cfg := tinyConfig(NameDenseRetNet, 1)
		cfg.TieWordEmbeddings = tied
		b := cpu.New(api.BackendOptions{Threads: 1})
		plain := newTestModel(t, cfg, b, 4)
		padded := *cfg
		padded.PadTokenID = new(int)
		*padded.PadTokenID = pad
		withPad := newTestModel(t, &padded, b, 4)
		batch := api.Batch{Inputs: [][]int32{{1, pad, 5, pad, 7}}, Targets: [][]int32{{pad, 5, 6, 7, 8}}}
		rowGrad := func(m *Model) []float32 {
			m.ZeroGrad()
			if _, err := m.LossAndGrad(ctx, batch); err != nil {
				t.Fatal(err)
			}
			d := cfg.HiddenSize
			return api.Float32s(m.Grads()[0].Value)[pad*d : (pad+1)*d]
		}
		gPlain, gPad := rowGrad(plain), rowGrad(withPad)
		var nPlain, nPad float64
		for i := range gPlain {
			nPlain += math.Abs(float64(gPlain[i]))
			nPad += math.Abs(float64(gPad[i]))
		}
		switch {
		case !(nPlain > 0):
			t.Fatalf("tied %v: the pad row has no gradient even without padding_idx", tied)
		case !tied && nPad != 0:
			t.Errorf("untied: the pad row's gradient has L1 norm %g, want 0", nPad)
		case tied && !(nPad > 0 && nPad != nPlain):
			t.Errorf("tied: the pad row's gradient has L1 norm %g (%g without padding_idx); want the head's part alone", nPad, nPlain)
		}
		want, _ := plain.Forward(ctx, batch.Inputs, api.Form{})
		got, err := withPad.Forward(ctx, batch.Inputs, api.Form{})
		if err != nil {
			t.Fatal(err)
		}
		if e := modeltest.RelErr(api.Float32s(got), api.Float32s(want)); e != 0 {
			t.Errorf("tied %v: padding_idx changed the logits by %g", tied, e)
		}
	}
}
