package checkpoint

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestStoredWeights checks that storedWeights, which reads the headers
// alone, names the weight storage Open's Checkpoint.WeightDType names:
// for plain, BF16-marked and Q8_0 files, a directory, sharded checkpoints
// (the first shard's value winning, as the metadata merge does), PyTorch
// files, and F32 for what it cannot read.
func TestStoredWeights(t *testing.T) {
	dir := t.TempDir()
	f32 := NamedTensor{Name: "norm", DType: api.F32, Shape: api.Shape{2}, Data: make([]byte, 8)}
	q8, _ := q8Tensor(t, "w", 2, 32)
	write := func(name string, meta map[string]string, tensors ...NamedTensor) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := Write(t.Context(), path, tensors, meta); err != nil {
			t.Fatal(err)
		}
		return path
	}
	index := func(name string, weightMap map[string]string) string {
		t.Helper()
		data, err := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("plain.safetensors", map[string]string{"format": "pt"}, f32)
	write("bf16.safetensors", map[string]string{WeightsKey: "bf16"}, f32)
	write("q8.safetensors", nil, q8, f32)
	write("q8dir/"+SingleFileName, nil, q8, f32)
	write("a/model-1.safetensors", nil, f32)
	write("a/model-2.safetensors", nil, q8) // Write marks it q8
	index("a/"+IndexFileName, map[string]string{"norm": "model-1.safetensors", "w": "model-2.safetensors"})
	write("b/model-1.safetensors", map[string]string{WeightsKey: "bf16"}, f32)
	write("b/model-2.safetensors", nil, q8)
	index("b/"+IndexFileName, map[string]string{"norm": "model-1.safetensors", "w": "model-2.safetensors"})
	if err := os.WriteFile(filepath.Join(dir, "corrupt.safetensors"), []byte("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\""), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want api.DType
	}{
		{"plain.safetensors", api.F32},
		{"bf16.safetensors", api.BF16},
		{"q8.safetensors", api.Q8_0},
		{"q8dir", api.Q8_0},
		{"a", api.Q8_0}, // the second shard's key, the first having none
		{"a/" + IndexFileName, api.Q8_0},
		{"b", api.BF16}, // the first shard's key wins over the second's q8
		{filepath.Join("..", "testdata", "pytorch", "model.bin"), api.F32},
		{filepath.Join("..", "testdata", "sharded"), api.F32},
		{"corrupt.safetensors", api.F32},
		{"missing", api.F32},
	} {
		path := filepath.Join(dir, tc.path)
		got := storedWeights(path)
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.path, got, tc.want)
		}
		if c, err := Open(path); err == nil {
			if d := c.WeightDType(); d != got {
				t.Errorf("%s: %s from the headers, %s from the opened checkpoint", tc.path, got, d)
			}
			c.Close()
		}
		if data, err := os.ReadFile(path); err == nil {
			if d := headerWeights(bytes.NewReader(data), int64(len(data))); d != tc.want && filepath.Ext(path) != ".json" {
				t.Errorf("%s in memory: %s, want %s", tc.path, d, tc.want)
			}
		}
	}
}

// TestLoadModelCheckConfigWeights checks the weight storage CheckConfig
// is told: BuildOptions.Weights when set, else the one the weights'
// metadata names (for LoadModel and LoadModelBytes), else F32.
func TestLoadModelCheckConfigWeights(t *testing.T) {
	cfg := fakeConfig{Layers: 2, Hidden: 2, VocabSize: 3}
	plain := saveFake(t, cfg, nil)
	marked := saveFake(t, cfg, nil)
	if err := Write(t.Context(), filepath.Join(marked, SingleFileName), fakeTensors(t, cfg), map[string]string{WeightsKey: "bf16"}); err != nil {
		t.Fatal(err)
	}
	seen := func(load func(LoadOptions) error, build api.DType) api.DType {
		t.Helper()
		got := api.Invalid
		opts := LoadOptions{Build: api.BuildOptions{On: &hostBackend{}, Weights: build}, CheckConfig: func(_ api.Config, weights api.DType) error {
			got = weights
			return os.ErrExist // stop before building
		}}
		if err := load(opts); err == nil {
			t.Fatal("CheckConfig's error was not returned")
		}
		return got
	}
	fromDir := func(dir string) func(LoadOptions) error {
		return func(o LoadOptions) error { _, err := LoadModel(t.Context(), dir, o); return err }
	}
	fromBytes := func(dir string) func(LoadOptions) error {
		return func(o LoadOptions) error {
			cfgJSON, err := os.ReadFile(filepath.Join(dir, ConfigFileName))
			if err != nil {
				t.Fatal(err)
			}
			weights, err := os.ReadFile(filepath.Join(dir, SingleFileName))
			if err != nil {
				t.Fatal(err)
			}
			_, err = LoadModelBytes(t.Context(), "in-memory", cfgJSON, weights, o)
			return err
		}
	}
	for _, tc := range []struct {
		what        string
		load        func(LoadOptions) error
		build, want api.DType
	}{
		{"plain", fromDir(plain), api.Invalid, api.F32},
		{"plain, q8 asked", fromDir(plain), api.Q8_0, api.Q8_0},
		{"bf16 file", fromDir(marked), api.Invalid, api.BF16},
		{"bf16 file, f32 asked", fromDir(marked), api.F32, api.F32},
		{"bf16 file in memory", fromBytes(marked), api.Invalid, api.BF16},
		{"plain in memory", fromBytes(plain), api.Invalid, api.F32},
	} {
		if got := seen(tc.load, tc.build); got != tc.want {
			t.Errorf("%s: CheckConfig told %s, want %s", tc.what, got, tc.want)
		}
	}
}
