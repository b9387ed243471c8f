package host

import (
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/plugins/conformance"
)

// tinyConfigs are small configurations of every built-in architecture.
var tinyConfigs = map[string]string{
	"mamba":       `{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "state_size": 8}`,
	"densemamba":  `{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 3, "state_size": 8}`,
	"retnet":      `{"vocab_size": 64, "decoder_embed_dim": 32, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 64, "decoder_layers": 2, "activation_fn": "swish"}`,
	"denseretnet": `{"vocab_size": 64, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 3}`,
}

// TestConformance runs every built-in architecture in process and through
// the CPU backend plugin and checks that the two models are the same model:
// the same parameters, logits in every form, recurrent steps, training
// steps (losses, gradient norms, weights and optimizer state after them)
// and sampled text, bit for bit.
func TestConformance(t *testing.T) {
	p := openPlugin(t, "densessm-backend-cpu", testOptions(t))
	for _, name := range []string{"mamba", "densemamba", "retnet", "denseretnet"} {
		t.Run(name, func(t *testing.T) {
			arch, err := api.LookupArchitecture(name)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := arch.ParseConfig([]byte(tinyConfigs[name]))
			if err != nil {
				t.Fatal(err)
			}
			threads := api.BackendOptions{Threads: 2}
			local, err := arch.New(t.Context(), cfg, api.BuildOptions{Backend: "cpu", BackendOptions: threads, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			remote, err := p.Architecture(name).New(t.Context(), cfg, api.BuildOptions{Backend: "cpu-plugin", BackendOptions: threads, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			defer remote.Close()
			conformance.Check(t, local, remote)
		})
	}
}

// TestLowPrecisionThroughPlugin builds models with BF16 and Q8_0 weights in
// process and through the CPU backend plugin (api.BuildOptions.Weights
// crosses the wire) and checks that the plugin reports the weights and
// gives the same logits, bit for bit, in the parallel form and in steps.
func TestLowPrecisionThroughPlugin(t *testing.T) {
	p := openPlugin(t, "densessm-backend-cpu", testOptions(t))
	ids := [][]int32{{1, 5, 9, 33, 2, 7}}
	for _, name := range []string{"mamba", "denseretnet"} {
		for _, w := range []api.DType{api.BF16, api.Q8_0} {
			t.Run(name+"/"+w.String(), func(t *testing.T) {
				arch, err := api.LookupArchitecture(name)
				if err != nil {
					t.Fatal(err)
				}
				cfg, err := arch.ParseConfig([]byte(tinyConfigs[name]))
				if err != nil {
					t.Fatal(err)
				}
				opts := api.BuildOptions{BackendOptions: api.BackendOptions{Threads: 2}, Seed: 7, Weights: w}
				local, err := arch.New(t.Context(), cfg, opts)
				if err != nil {
					t.Fatal(err)
				}
				opts.Backend = "cpu-plugin"
				remote, err := p.Architecture(name).New(t.Context(), cfg, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer remote.Close()
				if info := remote.Info(); info.Weights != w || info.Trainable {
					t.Errorf("the plugin's model says weights %s, trainable %v", info.Weights, info.Trainable)
				}
				var want []float32
				for _, m := range []api.Model{local, remote} {
					logits, err := m.Forward(t.Context(), ids, api.Form{})
					if err != nil {
						t.Fatal(err)
					}
					s, err := m.NewState(1)
					if err != nil {
						t.Fatal(err)
					}
					step, err := m.Step(t.Context(), s, ids[0][:1])
					if err != nil {
						t.Fatal(err)
					}
					got := append(api.Float32s(logits), api.Float32s(step)...)
					if want == nil {
						want = got
					} else if !slices.Equal(got, want) {
						t.Errorf("the plugin's logits differ from the in-process model's")
					}
				}
			})
		}
	}
}
