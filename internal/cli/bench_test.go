package cli

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/train"
)

// tinyMambaConfig is a Hugging Face style config.json of a Mamba small
// enough for a unit test.
const tinyMambaConfig = `{"model_type": "mamba", "vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 2,
 "state_size": 4, "expand": 2, "conv_kernel": 4, "time_step_rank": "auto", "layer_norm_epsilon": 1e-5,
 "use_conv_bias": true, "tie_word_embeddings": true}`

// benchJSON runs a bench command and decodes its one line of JSON output.
func benchJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out, errOut, st := runCLI(t, args...)
	if st != 0 {
		t.Fatalf("%s: status %d, %s", strings.Join(args, " "), st, errOut)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("want one line of JSON, got %q", out)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("invalid JSON %q: %v", out, err)
	}
	return rep
}

// wantNumber checks that rep[key] is the number want.
func wantNumber(t *testing.T, rep map[string]any, key string, want float64) {
	t.Helper()
	if got, ok := rep[key].(float64); !ok || got != want {
		t.Errorf("%s = %v, want %v", key, rep[key], want)
	}
}

// wantPositive checks that rep[key] is a finite number above 0.
func wantPositive(t *testing.T, rep map[string]any, key string) float64 {
	t.Helper()
	v, ok := rep[key].(float64)
	if !ok || !(v > 0) || math.IsInf(v, 0) {
		t.Errorf("%s = %v, want a finite positive number", key, rep[key])
	}
	return v
}

func TestBenchGemm(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	rep := benchJSON(t, "bench", "gemm", "--m", "7", "--n", "5", "--k", "33", "--threads", "1", "--reps", "3")
	if runtime.GOMAXPROCS(0) != procs {
		t.Errorf("GOMAXPROCS is %d after the run, want %d restored", runtime.GOMAXPROCS(0), procs)
	}
	for key, want := range map[string]float64{"m": 7, "n": 5, "k": 33, "threads": 1, "reps": 3} {
		wantNumber(t, rep, key, want)
	}
	sec := wantPositive(t, rep, "seconds_median")
	if g := wantPositive(t, rep, "gflops"); math.Abs(g*sec*1e9-2*7*5*33) > 1e-6*g*sec*1e9 {
		t.Errorf("gflops %v is not 2MNK/seconds_median", g)
	}
	if k := rep["kernel"]; k != "avx512" && k != "avx2" && k != "generic" {
		t.Errorf("kernel = %v, want avx512, avx2 or generic", k)
	}
	if e, ok := rep["max_sample_error"].(float64); !ok || e > 1e-5 {
		t.Errorf("max_sample_error = %v, want at most 1e-5", rep["max_sample_error"])
	}
}

func TestBenchModel(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfgFile, []byte(tinyMambaConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := mamba.ParseConfig(mamba.NameMamba, []byte(tinyMambaConfig))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mamba.New(cfg, cpu.New(api.BackendOptions{Threads: 1}), benchSeed)
	if err != nil {
		t.Fatal(err)
	}
	params := 0
	for _, p := range m.Parameters() {
		params += p.Value.Shape().NumElements()
	}

	rep := benchJSON(t, "bench", "model", "--arch", "mamba", "--config", cfgFile, "--prefill", "8", "--decode", "4",
		"--threads", "1", "--reps", "2", "--train-step", "--train-batch", "2", "--train-seq", "4")
	if rep["arch"] != "mamba" {
		t.Errorf("arch = %v", rep["arch"])
	}
	for key, want := range map[string]float64{
		"parameters": float64(params), "weight_bytes": float64(4 * params), "threads": 1, "reps": 2,
		"prefill_tokens": 8, "decode_tokens": 4, "train_batch": 2, "train_seq": 4,
	} {
		wantNumber(t, rep, key, want)
	}
	for _, key := range []string{"prefill_seconds", "prefill_tokens_per_s", "decode_tokens_per_s", "train_step_seconds", "train_tokens_per_s"} {
		wantPositive(t, rep, key)
	}
	// Random weights predict nearly uniformly: the loss is close to ln V.
	if loss := wantPositive(t, rep, "train_loss"); math.Abs(loss-math.Log(64)) > 1 {
		t.Errorf("train_loss %v is far from ln 64 = %.3f", loss, math.Log(64))
	}

	skipped := benchJSON(t, "bench", "model", "--arch", "mamba", "--config", cfgFile, "--prefill", "0", "--decode", "0")
	for _, key := range []string{"prefill_seconds", "prefill_tokens_per_s", "decode_tokens_per_s"} {
		if v, present := skipped[key]; !present || v != nil {
			t.Errorf("%s = %v (present %v), want null when skipped", key, v, present)
		}
	}
	for _, key := range []string{"train_step_seconds", "train_loss"} {
		if _, present := skipped[key]; present {
			t.Errorf("%s present without --train-step", key)
		}
	}
}

// TestTrainStepDescends checks that the timed training step applies SGD:
// after the untimed step and one timed step on the same batch, the loss is
// below the loss of the fresh model.
func TestTrainStepDescends(t *testing.T) {
	cfg, err := mamba.ParseConfig(mamba.NameMamba, []byte(tinyMambaConfig))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mamba.New(cfg, cpu.New(api.BackendOptions{Threads: 1}), benchSeed)
	if err != nil {
		t.Fatal(err)
	}
	batch := api.Batch{
		Inputs:  [][]int32{{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12}},
		Targets: [][]int32{{2, 3, 4, 5, 6, 7}, {8, 9, 10, 11, 12, 13}},
	}
	ctx := context.Background()
	fresh, err := m.LossAndGrad(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	sec, loss, err := timeTrainStep(ctx, train.NewLocalStepper(m), batch, 0.5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !(sec > 0) || !(loss < fresh-1e-3) {
		t.Errorf("after two SGD steps: loss %v (fresh %v), %v s; want a lower loss", loss, fresh, sec)
	}
}

func TestBenchErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "gemm", "--m", "0"}, "--m 0 must be at least 1"},
		{[]string{"bench", "gemm", "--threads", "-1"}, "threads -1: must be 0 (every core) or more"},
		{[]string{"bench", "model", "--arch", "nosuch"}, "not found"},
		{[]string{"bench", "model", "--arch", "mamba", "--decode", "-2"}, "must not be negative"},
		{[]string{"bench", "model", "--arch", "mamba", "--config", "/nonexistent/config.json"}, "no such file"},
	} {
		_, errOut, st := runCLI(t, tc.args...)
		if st != 1 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: status %d, stderr %q; want status 1 and one line with %q", strings.Join(tc.args, " "), st, errOut, tc.want)
		}
	}
}
