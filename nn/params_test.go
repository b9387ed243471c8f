package nn

import (
	"math"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestParamNames checks scoped names, creation order, lookup, the layers'
// names and shapes, and that duplicates are refused.
func TestParamNames(t *testing.T) {
	b := newBackend()
	p := NewParams(b, 1)
	root := p.Scope().Sub("backbone")
	emb := NewEmbedding(root.Sub("embeddings"), 11, 4, Normal(0.02))
	for i := range 2 {
		layer := root.Sub("layers").Index(i)
		NewRMSNorm(layer.Sub("norm"), 4, 1e-5)
		mixer := layer.Sub("mixer")
		NewLinear(mixer.Sub("in_proj"), 4, 16, Normal(0.02), nil)
		NewCausalConv1d(mixer.Sub("conv1d"), 8, 3, FanInUniform(3), FanInUniform(3))
		mixer.Param("A_log", Uniform(0, 1), 8, 2)
		NewLinear(mixer.Sub("dt_proj"), 1, 8, Uniform(-1, 1), Zeros())
	}
	want := []string{"backbone.embeddings.weight"}
	shapes := []api.Shape{{11, 4}}
	for i := range 2 {
		pre := "backbone.layers." + string(rune('0'+i)) + "."
		want = append(want, pre+"norm.weight", pre+"mixer.in_proj.weight", pre+"mixer.conv1d.weight",
			pre+"mixer.conv1d.bias", pre+"mixer.A_log", pre+"mixer.dt_proj.weight", pre+"mixer.dt_proj.bias")
		shapes = append(shapes, api.Shape{4}, api.Shape{16, 4}, api.Shape{8, 1, 3}, api.Shape{8}, api.Shape{8, 2},
			api.Shape{8, 1}, api.Shape{8})
	}
	if got := p.Names(); !slices.Equal(got, want) {
		t.Fatalf("names\n%q\nwant\n%q", got, want)
	}
	params := p.Parameters()
	if len(params) != len(want) || p.Len() != len(want) {
		t.Fatalf("%d parameters (Len %d), want %d", len(params), p.Len(), len(want))
	}
	for i, prm := range params {
		if prm.Name != want[i] || !prm.Value.Shape().Equal(shapes[i]) {
			t.Errorf("parameter %d: %s %v, want %s %v", i, prm.Name, prm.Value.Shape(), want[i], shapes[i])
		}
		v, ok := p.Lookup(prm.Name)
		if !ok || v.Value() != prm.Value || !v.RequiresGrad() {
			t.Errorf("Lookup(%q) = %v, %v", prm.Name, v, ok)
		}
	}
	if v, _ := p.Lookup("backbone.embeddings.weight"); v != emb.Weight {
		t.Error("Lookup does not return the layer's Var")
	}
	if _, ok := p.Lookup("backbone.missing"); ok {
		t.Error("Lookup found a missing name")
	}
	if s := root.Sub("layers").Index(7).Prefix(); s != "backbone.layers.7" {
		t.Errorf("prefix %q", s)
	}
	mustPanic(t, api.ErrInternal, func() { root.Sub("embeddings").Param("weight", Zeros(), 1) })
	mustPanic(t, api.ErrInternal, func() { root.Sub("") })

	// The parameters' tensors are the model's own: writing into one (as a
	// checkpoint loader does) changes what the layer computes.
	one := make([]float32, 11*4)
	for i := range one {
		one[i] = 1
	}
	setFloat32s(params[0].Value, one)
	sameValues(t, "embedding after a write", emb.Weight.Value(), api.FromFloat32s(b, one, 11, 4))
}

// TestParamGrads checks Grads (zeros before any Backward, then the
// accumulated gradients, by name and in order) and ZeroGrad.
func TestParamGrads(t *testing.T) {
	b := newBackend()
	p := NewParams(b, 2)
	lin := NewLinear(p.Scope().Sub("fc"), 3, 2, Normal(1), Normal(1))
	grads := p.Grads()
	if len(grads) != 2 || grads[0].Name != "fc.weight" || grads[1].Name != "fc.bias" {
		t.Fatalf("grads %v", grads)
	}
	closeValues(t, "initial weight gradient", api.Float32s(grads[0].Value), make([]float64, 6), 0)
	x := NewVar(api.FromFloat32s(b, []float32{1, 2, 3}, 1, 3), false)
	tp := NewTape(b)
	tp.Backward(tp.Sum(lin.Forward(tp, x))) // dW = [x; x], db = 1
	closeValues(t, "weight gradient", api.Float32s(p.Grads()[0].Value), []float64{1, 2, 3, 1, 2, 3}, 0)
	closeValues(t, "bias gradient", api.Float32s(p.Grads()[1].Value), []float64{1, 1}, 0)
	if p.Grads()[0].Value != grads[0].Value {
		t.Error("Backward replaced the gradient tensor Grads handed out")
	}
	p.ZeroGrad()
	closeValues(t, "zeroed bias gradient", api.Float32s(p.Grads()[1].Value), []float64{0, 0}, 0)
}

// TestInitDeterministic checks that initial values depend only on the seed
// and the parameter's name.
func TestInitDeterministic(t *testing.T) {
	b := newBackend()
	build := func(seed int64, extra bool) *Params {
		p := NewParams(b, seed)
		s := p.Scope().Sub("m")
		s.Param("a", Normal(1), 5, 7)
		if extra {
			s.Param("extra", Uniform(-1, 1), 3)
		}
		s.Param("b", Normal(1), 5, 7)
		return p
	}
	p1, p2, p3, p4 := build(42, false), build(42, false), build(42, true), build(43, false)
	get := func(p *Params, name string) api.Tensor {
		v, ok := p.Lookup(name)
		if !ok {
			t.Fatalf("no parameter %q", name)
		}
		return v.Value()
	}
	sameValues(t, "same seed, same name", get(p2, "m.a"), get(p1, "m.a"))
	sameValues(t, "a parameter added before it", get(p3, "m.b"), get(p1, "m.b"))
	differ := func(what string, x, y api.Tensor) {
		xs, ys := api.Float32s(x), api.Float32s(y)
		for i := range xs {
			if xs[i] == ys[i] {
				t.Errorf("%s: value %d equal (%v)", what, i, xs[i])
				return
			}
		}
	}
	differ("different names", get(p1, "m.a"), get(p1, "m.b"))
	differ("different seeds", get(p1, "m.a"), get(p4, "m.a"))
}

// TestInitRules checks the statistics of the random rules and the exact
// values of the fixed ones.
func TestInitRules(t *testing.T) {
	b := newBackend()
	p := NewParams(b, 7)
	s := p.Scope()
	values := func(v *Var) []float32 { return api.Float32s(v.Value()) }
	stats := func(xs []float32) (lo, hi, mean, std float64) {
		lo, hi = math.Inf(1), math.Inf(-1)
		for _, x := range xs {
			lo, hi = min(lo, float64(x)), max(hi, float64(x))
			mean += float64(x)
		}
		mean /= float64(len(xs))
		for _, x := range xs {
			std += (float64(x) - mean) * (float64(x) - mean)
		}
		return lo, hi, mean, math.Sqrt(std / float64(len(xs)))
	}
	// 40000 draws: the standard errors of the mean (std/200) and of the std
	// (std/280) are at least three times below the bounds used here (and
	// the draws are fixed by the seed).
	if _, _, mean, std := stats(values(s.Param("normal", Normal(0.02), 200, 200))); math.Abs(mean) > 0.001 || math.Abs(std-0.02) > 0.001 {
		t.Errorf("Normal(0.02): mean %g, std %g", mean, std)
	}
	if lo, hi, mean, _ := stats(values(s.Param("uniform", Uniform(2, 3), 200, 200))); lo < 2 || hi >= 3 || math.Abs(mean-2.5) > 0.01 {
		t.Errorf("Uniform(2,3): range [%g, %g], mean %g", lo, hi, mean)
	}
	if lo, hi, _, _ := stats(values(s.Param("fanin", FanInUniform(16), 200, 200))); lo < -0.25 || hi > 0.25 || lo > -0.24 || hi < 0.24 {
		t.Errorf("FanInUniform(16): range [%g, %g], want about ±0.25", lo, hi)
	}
	if lo, hi, _, _ := stats(values(s.Param("scaled", Scaled(Uniform(-1, 1), 0.5), 200, 200))); lo < -0.5 || hi > 0.5 || lo > -0.49 || hi < 0.49 {
		t.Errorf("Scaled(U(-1,1), 0.5): range [%g, %g]", lo, hi)
	}
	for name, c := range map[string]struct {
		init Init
		want float64
	}{"zeros": {Zeros(), 0}, "ones": {Ones(), 1}, "const": {Constant(-2.5), -2.5}} {
		got := values(s.Param(name, c.init, 5))
		want := []float64{c.want, c.want, c.want, c.want, c.want}
		closeValues(t, name, got, want, 0)
	}
}
