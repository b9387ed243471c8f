package main

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/plugins/host"
)

// PluginEnv names a prebuilt plugin executable for the tests to use
// instead of building one with go (scripts/gpu-check.sh sets it where the
// machine has no Go toolchain).
const PluginEnv = "DENSESSM_CUDA_PLUGIN"

// build builds the plugin into a temporary folder and returns its path, or
// returns PluginEnv's executable when that is set.
func build(t *testing.T) string {
	t.Helper()
	if path := os.Getenv(PluginEnv); path != "" {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s: %v", PluginEnv, err)
		}
		return path
	}
	if testing.Short() {
		t.Skip("builds the plugin binary")
	}
	for _, f := range []string{"main.go"} { // read, so that go test's cache follows the source
		if _, err := os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "densessm-backend-cuda"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "densessm-backend-cuda")
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func open(t *testing.T, path string) *host.Plugin {
	t.Helper()
	p, err := host.Open(context.Background(), path, host.Options{
		Dirs: []string{filepath.Dir(path)}, LockFile: filepath.Join(t.TempDir(), "none.lock"), Log: testLog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

var tinyConfigs = map[string]string{
	"mamba":       `{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "state_size": 8}`,
	"densemamba":  `{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 3, "state_size": 8}`,
	"retnet":      `{"vocab_size": 64, "decoder_embed_dim": 32, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 64, "decoder_layers": 2, "activation_fn": "swish"}`,
	"denseretnet": `{"vocab_size": 64, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 3}`,
}

// TestFakeDevice serves every built-in architecture from the plugin on the
// fake device (DENSESSM_CUDA_FAKE=1, inherited by the plugin process) and
// checks that its logits, parallel and step by step, are the CPU
// backend's (in this process) to rounding.
func TestFakeDevice(t *testing.T) {
	t.Setenv("DENSESSM_CUDA_FAKE", "1")
	p := open(t, build(t))
	ids := [][]int32{{1, 5, 9, 33, 2, 7}}
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
			local, err := arch.New(t.Context(), cfg, api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: 2}), Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			remote, err := p.Architecture(name).New(t.Context(), cfg, api.BuildOptions{Backend: "cuda", BackendOptions: api.BackendOptions{Threads: 2}, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			defer remote.Close()
			if got := remote.Info().Backend; got != "cuda" {
				t.Errorf("the model reports backend %q", got)
			}
			for _, form := range []api.Form{{}, {Mode: api.Recurrent}} {
				want, err := local.Forward(t.Context(), ids, form)
				if err != nil {
					t.Fatal(err)
				}
				got, err := remote.Forward(t.Context(), ids, form)
				if err != nil {
					t.Fatal(err)
				}
				w, g := api.Float32s(want), api.Float32s(got)
				var diff, scale float64
				for i := range w {
					diff = max(diff, math.Abs(float64(g[i]-w[i])))
					scale = max(scale, math.Abs(float64(w[i])))
				}
				if diff > 1e-4*scale {
					t.Errorf("%v form: logits differ by %g (scale %g)", form.Mode, diff, scale)
				}
			}
		})
	}
}

// TestNoDriver checks that, where there is no CUDA driver, the plugin
// starts and building a model on it fails with the loader's error, which
// keeps wrapping api.ErrUnsupported across the wire.
func TestNoDriver(t *testing.T) {
	t.Setenv("DENSESSM_CUDA_FAKE", "")
	p := open(t, build(t))
	arch, err := api.LookupArchitecture("mamba")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := arch.ParseConfig([]byte(tinyConfigs["mamba"]))
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Architecture("mamba").New(t.Context(), cfg, api.BuildOptions{Backend: "cuda", Seed: 7})
	if err == nil {
		m.Close()
		t.Skip("a CUDA driver and device are present")
	}
	if !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), "CUDA driver") {
		t.Fatalf("a model on cuda without a driver: %v, want the loader's error wrapping api.ErrUnsupported", err)
	}
	t.Logf("error: %v", err)
}
