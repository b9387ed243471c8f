package mamba

import (
	"context"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// TestStepSeesNewWeights checks that a decode state's kept A = -exp(A_log)
// follows the weights: after WriteParams and after a training step
// (LossAndGrad then an update of A_log in place), a state stepped before
// the change gives the logits of a state whose buffers were made after
// it, from the same recurrent contents.
func TestStepSeesNewWeights(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			b := cpu.New(api.BackendOptions{Threads: 1})
			m, err := New(cfg, b, 3)
			if err != nil {
				t.Fatal(err)
			}
			s, err := m.NewState(1)
			if err != nil {
				t.Fatal(err)
			}
			step := func(s api.State, id int32) []float32 {
				t.Helper()
				out, err := m.Step(ctx, s, []int32{id})
				if err != nil {
					t.Fatal(err)
				}
				return slices.Clone(api.Float32s(out))
			}
			step(s, 5)
			step(s, 9)
			// fresh is a new state holding what s holds, its step buffers
			// made with the weights as they are now.
			fresh := func() api.State {
				f, err := m.NewState(1)
				if err != nil {
					t.Fatal(err)
				}
				fs, ss := f.(*State), s.(*State)
				for i := range ss.conv {
					b.Copy(fs.conv[i], ss.conv[i])
					b.Copy(fs.ssm[i], ss.ssm[i])
				}
				copy(fs.lens, ss.lens)
				return f
			}
			aLog := m.layers[1].aLog.Value()
			changed := func(how string) {
				t.Helper()
				f := fresh()
				want, got := step(f, 11), step(s, 11)
				if !slices.Equal(got, want) {
					t.Fatalf("after %s: the state stepped before gives other logits than a fresh one", how)
				}
			}

			vals := api.Float32s(aLog)
			for i := range vals {
				vals[i] += 0.5
			}
			raw := make([]byte, 4*len(vals))
			if err := api.EncodeFloat32(raw, api.F32, vals); err != nil {
				t.Fatal(err)
			}
			host := api.HostTensor{Name: "backbone.layers.1.mixer.A_log", DType: api.F32, Shape: aLog.Shape(), Data: raw}
			if err := m.WriteParams(ctx, []api.HostTensor{host}); err != nil {
				t.Fatal(err)
			}
			changed("WriteParams")

			if _, err := m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{{1, 2, 3, 4}}, Targets: [][]int32{{2, 3, 4, 5}}}); err != nil {
				t.Fatal(err)
			}
			b.Fill(aLog, 0.25) // what an optimizer's update does, in place
			changed("a training step")
		})
	}
}
