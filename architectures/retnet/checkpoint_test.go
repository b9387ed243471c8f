package retnet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/checkpoint"
)

// TestSaveLoadRoundTrip saves every variant and loads it back: the same
// architecture, the same logits.
func TestSaveLoadRoundTrip(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	for name, cfg := range variants() {
		t.Run(name, func(t *testing.T) {
			modeltest.CheckSaveLoad(t, newTestModel(t, cfg, b, 3), b)
		})
	}
}

// writeForeign writes m's parameters into dir/model.safetensors under the
// names rename gives (plus extra tensors) and config.json.
func writeForeign(t *testing.T, dir string, m *Model, rename func(string) string, extra []checkpoint.NamedTensor, config string) {
	t.Helper()
	tensors, err := checkpoint.FromParameters(m.Parameters(), api.F32)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tensors {
		tensors[i].Name = rename(tensors[i].Name)
	}
	if err := checkpoint.Write(context.Background(), filepath.Join(dir, "model.safetensors"), append(tensors, extra...), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadTorchscaleNames loads RetNet weights named as a RetNetDecoder's
// state_dict (no "decoder." prefix, with its rel-pos buffers) and with the
// prefix, from a torchscale config with and without model_type.
func TestLoadTorchscaleNames(t *testing.T) {
	ctx := context.Background()
	b := cpu.New(api.BackendOptions{Threads: 1})
	m := newTestModel(t, tinyConfig(NameRetNet, 0), b, 4)
	buffers := []checkpoint.NamedTensor{
		{Name: "retnet_rel_pos.angle", DType: api.F32, Shape: api.Shape{8}, Data: make([]byte, 32)},
		{Name: "retnet_rel_pos.decay", DType: api.F32, Shape: api.Shape{3}, Data: make([]byte, 12)},
	}
	const fields = `"decoder_embed_dim": 24, "decoder_value_embed_dim": 36, "decoder_retention_heads": 3,
		"decoder_ffn_embed_dim": 40, "decoder_layers": 3, "vocab_size": 53, "activation_fn": "swish"`
	for name, tc := range map[string]struct {
		rename func(string) string
		config string
	}{
		"state_dict names": {func(n string) string { return strings.TrimPrefix(n, "decoder.") }, `{"model_type": "retnet", ` + fields + `}`},
		"decoder. names":   {func(n string) string { return n }, `{"model_type": "retnet", ` + fields + `}`},
		"no model_type":    {func(n string) string { return strings.TrimPrefix(n, "decoder.") }, `{` + fields + `}`},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeForeign(t, dir, m, tc.rename, buffers, tc.config)
			loaded, err := checkpoint.LoadModel(ctx, dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
			if err != nil {
				t.Fatal(err)
			}
			modeltest.SameLogits(t, m, loaded)
		})
	}
}

// TestLoadOfficialConfig loads DenseRetNet weights with the official
// config (model_type "llama"), which the denseretnet architecture
// recognises by its fields.
func TestLoadOfficialConfig(t *testing.T) {
	ctx := context.Background()
	b := cpu.New(api.BackendOptions{Threads: 1})
	m := newTestModel(t, tinyConfig(NameDenseRetNet, 2), b, 4)
	dir := t.TempDir()
	writeForeign(t, dir, m, func(n string) string { return n }, nil, `{"model_type": "llama", "hidden_size": 32,
		"query_key_dim": 16, "num_attention_heads": 2, "num_hidden_layers": 3, "rms_norm_eps": 1e-6, "v_factor": 2,
		"dense_block_layers": 2, "vocab_size": 53, "tie_word_embeddings": false,
		"intermediate_k_select_scale": 8, "intermediate_v_select_scale": 4}`)
	loaded, err := checkpoint.LoadModel(ctx, dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: b}})
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Config().ArchName(); got != NameDenseRetNet {
		t.Errorf("loaded as %q", got)
	}
	modeltest.SameLogits(t, m, loaded)
}

func TestNewUninitialized(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	modeltest.CheckUninitialized(t, NameRetNet, tinyConfig(NameRetNet, 0), b)
	modeltest.CheckUninitialized(t, NameDenseRetNet, tinyConfig(NameDenseRetNet, 2), b)
}
