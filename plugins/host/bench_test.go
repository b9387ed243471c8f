package host

import (
	"fmt"
	"testing"

	"github.com/densessm/densessm/api"
)

// BenchmarkPluginOverhead measures what the plugin boundary adds to a
// decode step and to a forward pass: the same model in process and
// through densessm-backend-cpu, with mamba-130m's vocabulary (50,280: the
// logits that cross, 201 KB per step and 206 MB for 1024 tokens) but one
// narrow layer, so that the model's own compute is small next to the
// transport. Compare the ns/op of inprocess and plugin.
func BenchmarkPluginOverhead(b *testing.B) {
	p := openPlugin(b, "densessm-backend-cpu", testOptions(b))
	arch, err := api.LookupArchitecture("mamba")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := arch.ParseConfig([]byte(`{"vocab_size": 50280, "hidden_size": 64, "num_hidden_layers": 1, "state_size": 8}`))
	if err != nil {
		b.Fatal(err)
	}
	o := api.BuildOptions{BackendOptions: api.BackendOptions{Threads: 1}, Seed: 1}
	local, err := arch.New(b.Context(), cfg, o)
	if err != nil {
		b.Fatal(err)
	}
	o.Backend = "cpu-plugin"
	remote, err := p.Architecture("mamba").New(b.Context(), cfg, o)
	if err != nil {
		b.Fatal(err)
	}
	defer remote.Close()
	for _, m := range []struct {
		name string
		m    api.Model
	}{{"inprocess", local}, {"plugin", remote}} {
		b.Run("step/"+m.name, func(b *testing.B) {
			s, err := m.m.NewState(1)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ids := []int32{1}
			for b.Loop() {
				if _, err := m.m.Step(b.Context(), s, ids); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, T := range []int{1024} {
			b.Run(fmt.Sprintf("forward%d/%s", T, m.name), func(b *testing.B) {
				ids := make([]int32, T)
				for i := range ids {
					ids[i] = int32(i * 31 % 50280)
				}
				for b.Loop() {
					if _, err := m.m.Forward(b.Context(), [][]int32{ids}, api.Form{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
