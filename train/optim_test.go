package train

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// params makes named parameters and gradients on b from host values.
func params(b api.Backend, names []string, shapes []api.Shape, values, grads [][]float32) ([]api.Parameter, []api.Parameter) {
	var p, g []api.Parameter
	for i, n := range names {
		p = append(p, api.Parameter{Name: n, Value: api.FromFloat32s(b, values[i], shapes[i]...)})
		g = append(g, api.Parameter{Name: n, Value: api.FromFloat32s(b, grads[i], shapes[i]...)})
	}
	return p, g
}

// TestAdamWAgainstReference runs three AdamW updates and compares with
// torch.optim.AdamW's update written out in float64: decay on the matrix,
// none on the norm weight and the embedding.
func TestAdamWAgainstReference(t *testing.T) {
	b := backend(t)
	cfg := OptimizerConfig{Name: AdamW, LR: 0.01, WeightDecay: 0.1, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8}
	names := []string{"layers.0.mixer.in_proj.weight", "layers.0.norm.weight", "backbone.embeddings.weight"}
	shapes := []api.Shape{{2, 2}, {2}, {2, 2}}
	values := [][]float32{{0.5, -1, 2, 0.25}, {1, 1}, {0.1, 0.2, 0.3, 0.4}}
	gradSeq := [][][]float32{
		{{0.1, -0.2, 0.3, 0}, {0.5, -0.5}, {1, 2, -3, 0.5}},
		{{-0.1, 0.4, 0.2, 1}, {0.25, 0.5}, {-1, 0, 3, 0.5}},
		{{0.3, 0.3, -0.3, -1}, {-0.5, 0.1}, {0.5, -2, 1, 0}},
	}
	p, g := params(b, names, shapes, values, gradSeq[0])
	o, err := NewOptimizer(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	ref := make([][]float64, 3)
	m, v := make([][]float64, 3), make([][]float64, 3)
	for i := range ref {
		for _, x := range values[i] {
			ref[i] = append(ref[i], float64(x))
		}
		m[i], v[i] = make([]float64, len(values[i])), make([]float64, len(values[i]))
	}
	decays := []bool{true, false, false}
	for step, grads := range gradSeq {
		for i := range g {
			copy(g[i].Value.(api.HostFloat32s).HostFloat32s(), grads[i])
		}
		if err := o.Step(p, g, cfg.LR); err != nil {
			t.Fatal(err)
		}
		n := float64(step + 1)
		for i := range ref {
			for j := range ref[i] {
				gj := float64(grads[i][j])
				if decays[i] {
					ref[i][j] *= 1 - cfg.LR*cfg.WeightDecay
				}
				m[i][j] = cfg.Beta1*m[i][j] + (1-cfg.Beta1)*gj
				v[i][j] = cfg.Beta2*v[i][j] + (1-cfg.Beta2)*gj*gj
				mh := m[i][j] / (1 - math.Pow(cfg.Beta1, n))
				vh := v[i][j] / (1 - math.Pow(cfg.Beta2, n))
				ref[i][j] -= cfg.LR * mh / (math.Sqrt(vh) + cfg.Eps)
			}
		}
	}
	for i := range p {
		got := api.Float32s(p[i].Value)
		for j := range got {
			if d := math.Abs(float64(got[j]) - ref[i][j]); d > 1e-6 {
				t.Errorf("%s[%d] = %.8f, reference %.8f", names[i], j, got[j], ref[i][j])
			}
		}
	}
}

// TestSGDAgainstReference checks momentum, Nesterov and the L2 term
// against torch.optim.SGD's rule in float64.
func TestSGDAgainstReference(t *testing.T) {
	for _, nesterov := range []bool{false, true} {
		b := backend(t)
		cfg := OptimizerConfig{Name: SGD, LR: 0.1, WeightDecay: 0.01, Momentum: 0.9, Nesterov: nesterov}
		p, g := params(b, []string{"w"}, []api.Shape{{1, 3}}, [][]float32{{1, -2, 0.5}}, [][]float32{{0, 0, 0}})
		o, err := NewOptimizer(cfg, p)
		if err != nil {
			t.Fatal(err)
		}
		ref := []float64{1, -2, 0.5}
		buf := make([]float64, 3)
		for step, grads := range [][]float32{{0.5, 1, -1}, {0.25, -1, 2}, {1, 1, 1}} {
			copy(g[0].Value.(api.HostFloat32s).HostFloat32s(), grads)
			if err := o.Step(p, g, cfg.LR); err != nil {
				t.Fatal(err)
			}
			for j := range ref {
				d := float64(grads[j]) + cfg.WeightDecay*ref[j]
				if step == 0 {
					buf[j] = d
				} else {
					buf[j] = cfg.Momentum*buf[j] + d
				}
				if nesterov {
					d += cfg.Momentum * buf[j]
				} else {
					d = buf[j]
				}
				ref[j] -= cfg.LR * d
			}
		}
		got := api.Float32s(p[0].Value)
		for j := range got {
			if math.Abs(float64(got[j])-ref[j]) > 1e-6 {
				t.Errorf("nesterov %v: w[%d] = %.8f, reference %.8f", nesterov, j, got[j], ref[j])
			}
		}
	}
}

func TestDecays(t *testing.T) {
	for _, c := range []struct {
		name  string
		shape api.Shape
		want  bool
	}{
		{"backbone.layers.0.mixer.in_proj.weight", api.Shape{8, 4}, true},
		{"backbone.layers.0.mixer.conv1d.weight", api.Shape{8, 1, 4}, true},
		{"backbone.layers.0.mixer.conv1d.bias", api.Shape{8}, false},
		{"backbone.layers.0.norm.weight", api.Shape{4}, false},
		{"backbone.layers.0.mixer.A_log", api.Shape{8, 16}, false},
		{"backbone.layers.0.mixer.D", api.Shape{8}, false},
		{"backbone.embeddings.weight", api.Shape{32, 4}, false},
		{"model.embed_tokens.weight", api.Shape{32, 4}, false},
		{"lm_head.weight", api.Shape{32, 4}, true},
	} {
		if got := Decays(c.name, c.shape); got != c.want {
			t.Errorf("Decays(%s %v) = %v, want %v", c.name, c.shape, got, c.want)
		}
	}
}

func TestScheduleFactors(t *testing.T) {
	const eps = 1e-12
	near := func(a, b float64) bool { return math.Abs(a-b) < eps }
	cos := Schedule{Kind: Cosine, Warmup: 4, MinRatio: 0.1}
	// Warmup: 1/4, 2/4, 3/4, 4/4; then cosine from 1 at step 4 to 0.1 at
	// step 9, the last.
	for step, want := range map[int]float64{
		0: 0.25, 1: 0.5, 2: 0.75, 3: 1, 4: 1, 5: 0.1 + 0.9*0.5*(1+math.Cos(math.Pi/5)), 9: 0.1,
	} {
		if got := cos.Factor(step, 10); !near(got, want) {
			t.Errorf("cosine factor at step %d = %g, want %g", step, got, want)
		}
	}
	lin := Schedule{Kind: Linear, MinRatio: 0}
	for step, want := range []float64{1, 0.75, 0.5, 0.25, 0} {
		if got := lin.Factor(step, 5); !near(got, want) {
			t.Errorf("linear factor at step %d = %g, want %g", step, got, want)
		}
	}
	if got := (Schedule{Kind: Constant, Warmup: 2}).Factor(7, 10); got != 1 {
		t.Errorf("constant after warmup = %g", got)
	}
}

func TestValidateNamesFlags(t *testing.T) {
	for _, c := range []struct {
		mut  func(*Config)
		flag string
	}{
		{func(c *Config) { c.Steps = 0 }, "--steps"},
		{func(c *Config) { c.Optimizer.LR = math.NaN() }, "--lr"},
		{func(c *Config) { c.Optimizer.Name = "lion" }, "--optimizer"},
		{func(c *Config) { c.Schedule.Kind = "step" }, "--schedule"},
		{func(c *Config) { c.Schedule.Warmup = 5000 }, "--warmup"},
		{func(c *Config) { c.ClipNorm = -1 }, "--clip"},
		{func(c *Config) { c.Optimizer.Beta2 = 1 }, "--beta2"},
		{func(c *Config) { c.Optimizer.WeightDecay = -1 }, "--weight-decay"},
	} {
		cfg := DefaultConfig()
		c.mut(&cfg)
		err := cfg.Validate()
		if err == nil || !errors.Is(err, api.ErrConfig) || !strings.HasPrefix(err.Error(), c.flag+" ") {
			t.Errorf("%s: got %v", c.flag, err)
		}
	}
}

func TestClipping(t *testing.T) {
	b := backend(t)
	_, g := params(b, []string{"a", "b"}, []api.Shape{{2}, {1}}, [][]float32{{0, 0}, {0}}, [][]float32{{3, 0}, {4}})
	norm, bad := globalNorm(g)
	if norm != 5 || bad != "" {
		t.Fatalf("norm %g bad %q, want 5", norm, bad)
	}
	g[1].Value.(api.HostFloat32s).HostFloat32s()[0] = float32(math.Inf(1))
	if _, bad := globalNorm(g); bad != "b" {
		t.Fatalf("non-finite gradient named %q, want b", bad)
	}
}

// BenchmarkUpdate times what the trainer does per step besides the
// model's loss and gradients, on the default model's shape (2.3M
// parameters): the global gradient norm and an AdamW update.
func BenchmarkUpdate(b *testing.B) {
	a, err := api.LookupArchitecture("densemamba")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := a.ParseConfig([]byte(`{"model_type":"densemamba","vocab_size":4096,"hidden_size":192,"num_hidden_layers":6}`))
	if err != nil {
		b.Fatal(err)
	}
	be, err := api.NewBackend("cpu", api.BackendOptions{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	m, err := a.New(context.Background(), cfg, api.BuildOptions{On: be, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	params, grads := m.(api.LocalModel).Parameters(), m.(api.Trainable).Grads()
	o, err := NewOptimizer(DefaultOptimizer(), params)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		globalNorm(grads)
		if err := o.Step(params, grads, 1e-3); err != nil {
			b.Fatal(err)
		}
	}
}
