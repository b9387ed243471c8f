package cli

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/densessm/densessm/plugins/sdk" // what the plugins link: a change rebuilds this test
)

// buildPlugins builds the example third-party plugin (hgrn, a module of
// its own) and densessm-backend-cpu into a new folder.
func buildPlugins(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds plugins")
	}
	// The sources the plugins are built from, read so that go test's
	// cache knows the results depend on them (sdk is linked by this test
	// binary: the blank import below).
	for _, src := range []string{"../../plugins/examples/hgrn", "../../plugins/examples/hgrn/cmd/densessm-plugin-hgrn", "../../cmd/densessm-backend-cpu"} {
		files, _ := filepath.Glob(filepath.Join(src, "*.go"))
		for _, f := range files {
			if _, err := os.ReadFile(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	for _, b := range []struct{ moduleDir, pkg string }{
		{"../../plugins/examples/hgrn", "./cmd/densessm-plugin-hgrn"},
		{".", "../../cmd/densessm-backend-cpu"},
	} {
		c := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), b.pkg)
		c.Dir = b.moduleDir
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return dir
}

// pluginCLI runs the CLI as a child process that finds plugins in dir
// only (its user folders are empty ones), and returns stdout.
func pluginCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	c, stderr := child(t, nil, args...)
	home := t.TempDir()
	c.Env = append(c.Env, "DENSESSM_PLUGIN_PATH="+dir, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	out, err := c.Output()
	if err != nil {
		t.Fatalf("densessm %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// TestPluginArchitecture is the walk-through of docs/plugins.md: after go
// build of the example into the plugin path, plugins list shows it, archs
// lists its architecture as the plugin's, and train, generate and eval
// work with it; a built-in model on the CPU backend plugin decodes the
// same text as in process.
func TestPluginArchitecture(t *testing.T) {
	dir := buildPlugins(t)

	var list []pluginEntry
	if err := json.Unmarshal([]byte(pluginCLI(t, dir, "plugins", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	names := map[string]pluginEntry{}
	for _, e := range list {
		names[e.Name] = e
	}
	if e := names["hgrn"]; len(list) != 2 || len(e.Architectures) != 1 || e.Architectures[0] != "hgrn" || filepath.Dir(e.Path) != dir {
		t.Fatalf("plugins list: %+v", list)
	}
	if out := pluginCLI(t, dir, "archs"); !strings.Contains(out, "hgrn\t(plugin hgrn)\n") || !strings.Contains(out, "densemamba\n") {
		t.Errorf("archs:\n%s", out)
	}
	if out := pluginCLI(t, dir, "backends"); !strings.Contains(out, "cpu-plugin\t(plugin cpu)\n") {
		t.Errorf("backends:\n%s", out)
	}

	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(strings.TrimSpace(string(goroot)), "src", "errors")
	tok := filepath.Join("..", "..", "defaultmodel", "model", "tokenizer.json")
	cfg := filepath.Join(t.TempDir(), "hgrn.json")
	os.WriteFile(cfg, []byte(`{"hidden_size": 16, "num_hidden_layers": 2, "intermediate_size": 32, "dense_m": 1}`), 0o644)
	run := filepath.Join(t.TempDir(), "run")
	pluginCLI(t, dir, "train", "--arch", "hgrn", "--data", data, "--tokenizer", tok, "--model-config", cfg,
		"--steps", "4", "--batch-size", "2", "--seq-len", "16", "--eval-every", "2", "--checkpoint-every", "2", "--threads", "1", "--out", run)
	var state struct{ Step int }
	raw, err := os.ReadFile(filepath.Join(run, "checkpoints", "step-00000004", "trainer_state.json"))
	if err != nil || json.Unmarshal(raw, &state) != nil || state.Step != 4 {
		t.Fatalf("checkpoint after training: %v, %s", err, raw)
	}
	// Resuming from step 2 in the plugin (weights loaded there, the
	// optimizer's state sent back) ends where the straight run did.
	resumed := filepath.Join(t.TempDir(), "resumed")
	if out, err := exec.Command("cp", "-r", run, resumed).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if err := os.RemoveAll(filepath.Join(resumed, "checkpoints", "step-00000004")); err != nil {
		t.Fatal(err)
	}
	pluginCLI(t, dir, "train", "--steps", "4", "--out", resumed, "--resume")
	for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
		a, errA := os.ReadFile(filepath.Join(run, "checkpoints", "step-00000004", f))
		b, errB := os.ReadFile(filepath.Join(resumed, "checkpoints", "step-00000004", f))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("step 4's %s after resuming through the plugin differs from the straight run's (%v, %v)", f, errA, errB)
		}
	}
	if out := pluginCLI(t, dir, "generate", "--model", run, "--max-tokens", "8", "--seed", "1", "func"); !strings.HasPrefix(out, "func") {
		t.Errorf("generate with the plugin's model: %q", out)
	}
	var ppl struct {
		Perplexity float64 `json:"perplexity"`
	}
	out := pluginCLI(t, dir, "eval", "ppl", "--model", run, "--data", filepath.Join(data, "wrap.go"), "--json")
	if err := json.Unmarshal([]byte(out), &ppl); err != nil || !(ppl.Perplexity > 1) {
		t.Errorf("eval ppl with the plugin's model: %v, %s", err, out)
	}
	if out := pluginCLI(t, dir, "eval", "mc", "--model", run, "--task", "../../eval/testdata/go-syntax.jsonl"); !strings.Contains(out, "acc") {
		t.Errorf("eval mc with the plugin's model: %s", out)
	}

	in := pluginCLI(t, dir, "generate", "--max-tokens", "16", "--seed", "3", "--threads", "1", "func main() {")
	out = pluginCLI(t, dir, "generate", "--backend", "cpu-plugin", "--max-tokens", "16", "--seed", "3", "--threads", "1", "func main() {")
	if in != out {
		t.Errorf("the default model decodes %q on the CPU backend plugin, %q in process", out, in)
	}
}

// pluginProcesses returns the pids of running processes whose executable
// is in dir.
func pluginProcesses(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && filepath.Dir(exe) == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestPluginStopsWithHost: a command interrupted while a plugin computes
// exits 130 and leaves no plugin process, and a host killed outright
// (SIGKILL: no chance to clean up) takes its plugin with it.
func TestPluginStopsWithHost(t *testing.T) {
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		t.Skip("no /proc to look for processes in")
	}
	dir := buildPlugins(t)
	for _, sig := range []os.Signal{os.Interrupt, os.Kill} {
		t.Run(sig.String(), func(t *testing.T) {
			c, stderr := child(t, nil, "generate", "--backend", "cpu-plugin", "--max-tokens", "1000000", "--ignore-eos", "func")
			home := t.TempDir()
			c.Env = append(c.Env, "DENSESSM_PLUGIN_PATH="+dir, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for len(pluginProcesses(dir)) == 0 {
				if time.Now().After(deadline) {
					c.Process.Kill()
					c.Wait()
					t.Fatalf("the plugin did not start: %s", stderr)
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // decoding
			c.Process.Signal(sig)
			err := c.Wait()
			if sig == os.Interrupt {
				if code := c.ProcessState.ExitCode(); code != exitInterrupted {
					t.Errorf("status %d (%v), want %d: %s", code, err, exitInterrupted, stderr)
				}
			}
			for deadline := time.Now().Add(3 * time.Second); len(pluginProcesses(dir)) > 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("plugin processes left: %v", pluginProcesses(dir))
				}
			}
		})
	}
}

// TestCUDABackendPlugin runs commands with --backend cuda through the
// densessm-backend-cuda plugin on its fake device (DENSESSM_CUDA_FAKE=1,
// device memory modelled on the host): generate and eval ppl give what
// they give on the CPU backend (the same greedy text; the perplexity to
// 1e-6, the device's products summing in another order). Without a GPU
// and without the fake, the command fails with one line naming the
// missing driver.
func TestCUDABackendPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	dir := t.TempDir()
	c := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "../../cmd/densessm-backend-cuda")
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build densessm-backend-cuda: %v\n%s", err, out)
	}
	text := writeFile(t, t.TempDir(), "a.go", strings.Repeat("func add(a, b int) int {\n\treturn a + b\n}\n\n", 20))
	gen := []string{"generate", "--temperature", "0", "--max-tokens", "12", "--threads", "1", "func main() {"}
	ppl := []string{"eval", "ppl", "--data", text, "--json", "--threads", "1"}
	run := func(env []string, args ...string) (string, string, error) {
		c, stderr := child(t, nil, args...)
		home := t.TempDir()
		c.Env = append(c.Env, "DENSESSM_PLUGIN_PATH="+dir, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
		c.Env = append(c.Env, env...)
		out, err := c.Output()
		return string(out), stderr.String(), err
	}
	fake := []string{"DENSESSM_CUDA_FAKE=1"}
	for _, args := range [][]string{gen, ppl} {
		want, errOut, st := runCLI(t, args...)
		if st != 0 {
			t.Fatalf("%v on the CPU: %s", args, errOut)
		}
		got, errOut2, err := run(fake, append(args, "--backend", "cuda")...)
		if err != nil {
			t.Fatalf("%v on the fake CUDA device: %v\n%s", args, err, errOut2)
		}
		if args[0] == "eval" {
			var w, g struct{ Perplexity float64 }
			if json.Unmarshal([]byte(want), &w) != nil || json.Unmarshal([]byte(got), &g) != nil || math.Abs(g.Perplexity-w.Perplexity) > 1e-6*w.Perplexity {
				t.Fatalf("eval ppl on the fake CUDA device %s, on the CPU %s", got, want)
			}
		} else if got != want {
			t.Fatalf("generate on the fake CUDA device %q, on the CPU %q", got, want)
		}
	}
	// A bad GEMM precision stops the command with one line naming it.
	if _, errOut, err := run(append(fake, "DENSESSM_CUDA_GEMM=fp16"), append(gen, "--backend", "cuda")...); err == nil ||
		strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, `DENSESSM_CUDA_GEMM: GEMM precision "fp16"`) {
		t.Fatalf("DENSESSM_CUDA_GEMM=fp16: %v, stderr %q", err, errOut)
	}
	if _, err := os.Stat("/dev/nvidiactl"); err == nil {
		return // a machine with a GPU: the real device would run
	}
	if _, errOut, err := run(nil, append(gen, "--backend", "cuda")...); err == nil || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "no CUDA driver found") {
		t.Fatalf("without a driver: %v, stderr %q", err, errOut)
	}
}
