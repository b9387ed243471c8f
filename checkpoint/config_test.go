package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

const sampleConfig = `{
  "model_type": "mamba",
  "hidden_size": 768,
  "num_hidden_layers": 24.0,
  "layer_norm_epsilon": 1e-5,
  "tie_word_embeddings": true,
  "intermediate_size": null,
  "vocab_size": 50280.5,
  "big": 1e300
}`

func TestReadConfigJSON(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ConfigFileName)
	if err := os.WriteFile(path, []byte(sampleConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, path} {
		data, err := ReadConfigJSON(p)
		if err != nil || string(data) != sampleConfig {
			t.Errorf("ReadConfigJSON(%s) = %q, %v", p, data, err)
		}
	}
	if _, err := ReadConfigJSON(t.TempDir()); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("missing config.json: %v", err)
	}
	for name, text := range map[string]string{"array": "[1]", "null": "null", "broken": `{"a":`, "two values": "{} {}"} {
		bad := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadConfigJSON(bad); !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s config: %v", name, err)
		}
	}
}

func TestHFConfig(t *testing.T) {
	c, err := ParseHFConfig([]byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Int("d_model", "hidden_size"); err != nil || v != 768 {
		t.Errorf("Int(d_model, hidden_size) = %v, %v", v, err)
	}
	if v, err := c.Int("num_hidden_layers"); err != nil || v != 24 {
		t.Errorf("Int of 24.0 = %v, %v", v, err)
	}
	if v, err := c.Float("layer_norm_epsilon"); err != nil || v != 1e-5 {
		t.Errorf("Float = %v, %v", v, err)
	}
	if v, err := c.Float("hidden_size"); err != nil || v != 768 {
		t.Errorf("Float of an integer = %v, %v", v, err)
	}
	if v, err := c.Str("model_type"); err != nil || v != "mamba" {
		t.Errorf("Str = %v, %v", v, err)
	}
	if v, err := c.Bool("tie_word_embeddings"); err != nil || !v {
		t.Errorf("Bool = %v, %v", v, err)
	}
	if c.Has("intermediate_size") || !c.Has("nope", "hidden_size") || c.Has() {
		t.Error("Has is wrong")
	}
	for _, tc := range []struct {
		name string
		err  error
		text string
	}{
		{"missing", second(c.Int("intermediate_size")), `no "intermediate_size"`},
		{"missing alternatives", second(c.Float("a", "b")), `none of ["a" "b"]`},
		{"fraction", second(c.Int("vocab_size")), `"vocab_size" is 50280.5, not an integer`},
		{"too big", second(c.Int("big")), `"big"`},
		{"string as int", second(c.Int("model_type")), "not an integer"},
		{"number as string", second(c.Str("hidden_size")), "not a string"},
		{"number as bool", second(c.Bool("hidden_size")), "not a boolean"},
		{"bool as float", second(c.Float("tie_word_embeddings")), "not a number"},
	} {
		if !errors.Is(tc.err, api.ErrConfig) || !strings.Contains(tc.err.Error(), tc.text) {
			t.Errorf("%s: %v, want ErrConfig saying %s", tc.name, tc.err, tc.text)
		}
	}
}

// second returns the error of a (value, error) pair.
func second[T any](_ T, err error) error { return err }

// TestReadConfigJSONCapped reads config.json through a 16 MiB cap: a large
// (sparse) file, an endless device and a directory give clear errors
// instead of reading until memory runs out.
func TestReadConfigJSONCapped(t *testing.T) {
	big := filepath.Join(t.TempDir(), ConfigFileName)
	if err := os.WriteFile(big, []byte(`{"a": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, maxConfigSize+1); err != nil {
		t.Fatal(err)
	}
	_, err := ReadConfigJSON(big)
	if !errors.Is(err, api.ErrOutOfRange) || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "16 MiB cap") {
		t.Errorf("config of 16 MiB + 1: %v", err)
	}
	if err := os.Truncate(big, maxConfigSize); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfigJSON(big); !errors.Is(err, api.ErrCorrupt) || errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("config of 16 MiB padded with NULs: %v; want it read, then refused as JSON", err)
	}

	if _, err := os.Stat("/dev/zero"); err == nil {
		_, err := ReadConfigJSON("/dev/zero")
		if !errors.Is(err, api.ErrOutOfRange) || !strings.Contains(err.Error(), "/dev/zero") {
			t.Errorf("/dev/zero: %v", err)
		}
	}

	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ConfigFileName), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = ReadConfigJSON(dir)
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "is a directory") || !strings.Contains(err.Error(), filepath.Join(dir, ConfigFileName)) {
		t.Errorf("config.json that is a directory: %v", err)
	}
}
