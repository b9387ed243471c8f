package host

import (
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
