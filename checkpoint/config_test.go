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

// TestPickArchitecture picks by model_type, by a forced name, and refuses
// a model_type that is not a string or names nothing registered.
func TestPickArchitecture(t *testing.T) {
	pick := func(text, forced string) (api.Architecture, error) {
		var fields configFields
		if forced == "" {
			var err error
			if fields, err = parseConfigFields([]byte(text)); err != nil {
				t.Fatal(err)
			}
		}
		return pickArchitecture([]byte(text), fields, forced, "")
	}
	for _, tc := range []struct{ text, forced string }{
		{`{"model_type": "` + testArchName + `"}`, ""},
		{`{"model_type": "nothing-registered", "hidden_size": 4}`, testArchName},
		{`not even JSON`, testArchName},
	} {
		if a, err := pick(tc.text, tc.forced); err != nil || a.Name() != testArchName {
			t.Errorf("%s forced %q: %v, %v", tc.text, tc.forced, a, err)
		}
	}
	if _, err := pick(`{"model_type": 5}`, ""); !errors.Is(err, api.ErrCorrupt) || !strings.Contains(err.Error(), "model_type 5") {
		t.Errorf("numeric model_type: %v", err)
	}
	for _, text := range []string{`{"model_type": "nothing-registered"}`, `{"model_type": null}`, `{}`} {
		if _, err := pick(text, ""); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), testArchName) {
			t.Errorf("%s: %v, want ErrNotFound listing the architectures", text, err)
		}
	}
}

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
