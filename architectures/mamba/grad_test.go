package mamba

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestGradientsFiniteDifference checks LossAndGrad of every variant against
// central finite differences of the loss, on the largest gradient entries
// of the embedding, one mixer projection and (for DenseMamba) the dense
// link. The kernels' gradients are checked exactly elsewhere (the
// compliance suite, the Mamba parity fixtures); this test checks the model
// wiring, in float32, with step 1e-3 and a 2% tolerance. Every parameter
// must receive a gradient.
func TestGradientsFiniteDifference(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, cpu.New(api.BackendOptions{Threads: 1}), 5)
			if err != nil {
				t.Fatal(err)
			}
			// A larger step size dt than the initialisation's (softplus(-1.5)
			// is about 0.2) gives the state, and so A_log and the state
			// links, gradients that float32 finite differences resolve.
			for _, p := range m.Parameters() {
				if strings.HasSuffix(p.Name, "dt_proj.bias") {
					m.b.Fill(p.Value, -1.5)
				}
			}
			r := rand.New(rand.NewPCG(9, 9))
			batch := api.Batch{Inputs: modeltest.RandomIDs(r, 2, 9, cfg.VocabSize), Targets: modeltest.RandomIDs(r, 2, 9, cfg.VocabSize)}
			batch.Targets[1][4] = api.IgnoreIndex
			m.ZeroGrad()
			if _, err := m.LossAndGrad(ctx, batch); err != nil {
				t.Fatal(err)
			}
			grads := map[string][]float32{}
			for _, g := range m.Grads() {
				v := api.Float32s(g.Value)
				var norm float64
				for _, x := range v {
					norm += float64(x) * float64(x)
				}
				if !(norm > 0) {
					t.Errorf("%s: gradient is zero or NaN", g.Name)
				}
				grads[g.Name] = v
			}
			loss := func() float64 {
				m.ZeroGrad()
				l, err := m.LossAndGrad(ctx, batch)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			for _, p := range m.Parameters() {
				if !strings.Contains(p.Name, "embeddings") && !strings.Contains(p.Name, "layers.1.mixer.x_proj") &&
					!strings.Contains(p.Name, "layers.2.mixer.dense_gate.fc2") && !strings.Contains(p.Name, "layers.1.mixer.A_log") {
					continue
				}
				// The directional derivative along the gradient is |g|.
				g := grads[p.Name]
				var gn float64
				for _, x := range g {
					gn += float64(x) * float64(x)
				}
				gn = math.Sqrt(gn)
				orig := api.Float32s(p.Value)
				// A step long enough to move the float32 loss by about 1e-3.
				h := min(max(1e-3/gn, 1e-2), 1)
				set := func(step float64) {
					moved := make([]float32, len(orig))
					for k := range orig {
						moved[k] = orig[k] + float32(step*float64(g[k])/gn)
					}
					m.b.Copy(p.Value, api.FromFloat32s(m.b, moved, p.Value.Shape()...))
				}
				set(h)
				up := loss()
				set(-h)
				down := loss()
				set(0)
				fd := (up - down) / (2 * h)
				t.Logf("%s: |gradient| %.6g, directional finite difference %.6g", p.Name, gn, fd)
				if math.Abs(fd-gn) > 0.02*gn {
					t.Errorf("%s: |gradient| %.6g, directional finite difference %.6g", p.Name, gn, fd)
				}
			}
		})
	}
}
