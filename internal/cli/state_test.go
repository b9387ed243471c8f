package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/defaultmodel"
)

// TestGenerateStates checks --save-state and --state on the built-in
// model: a saved state holds the prompt and the output, a continued run
// is repeatable and saves a state further on, and a state of other
// weights, a missing file and several prompts are refused with a message.
func TestGenerateStates(t *testing.T) {
	dir := t.TempDir()
	s1, s2 := filepath.Join(dir, "s1.safetensors"), filepath.Join(dir, "s2.safetensors")
	greedy := []string{"generate", "--temperature", "0", "--max-tokens", "8", "--threads", "1"}
	run := func(args ...string) string {
		t.Helper()
		out, errOut, st := runCLI(t, append(append([]string(nil), greedy...), args...)...)
		if st != 0 {
			t.Fatalf("%v: status %d: %s", args, st, errOut)
		}
		return out
	}
	run("--save-state", s1, "func main() {")
	first, err := checkpoint.ReadState(s1)
	if err != nil {
		t.Fatal(err)
	}
	if first.Batch != 1 || first.Tokens < 9 {
		t.Fatalf("saved state: %d sequences at %d tokens, want 1 at the prompt's and 8 more", first.Batch, first.Tokens)
	}
	a := run("--state", s1, "--save-state", s2, "\n\tx := ")
	if b := run("--state", s1, "\n\tx := "); a != b {
		t.Fatalf("two runs from one state differ:\n%q\n%q", a, b)
	}
	second, err := checkpoint.ReadState(s2)
	if err != nil {
		t.Fatal(err)
	}
	if second.Tokens <= first.Tokens+1 {
		t.Fatalf("continued state at %d tokens, the first at %d", second.Tokens, first.Tokens)
	}

	other := first
	other.WeightsHash = strings.Repeat("0", 64)
	s3 := filepath.Join(dir, "other.safetensors")
	if err := checkpoint.WriteState(context.Background(), s3, other); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--state", s3, "x"}, "other weights"},
		{[]string{"--state", filepath.Join(dir, "missing"), "x"}, "not found"},
		{[]string{"--save-state", s1, "a", "b"}, "one prompt"},
	} {
		_, errOut, st := runCLI(t, append(append([]string(nil), greedy...), c.args...)...)
		if st == 0 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: status %d, stderr %q; want a one-line error saying %q", c.args, st, errOut, c.want)
		}
	}
}

// TestVerifyCommand runs verify on the built-in model: every check
// passes, in the table and in JSON.
func TestVerifyCommand(t *testing.T) {
	out, errOut, st := runCLI(t, "verify", "--threads", "1", "--tokens", "16")
	if st != 0 || !strings.Contains(out, "snapshot, restore, continue") || strings.Contains(out, "FAIL") {
		t.Fatalf("status %d\n%s\n%s", st, out, errOut)
	}
	out, errOut, st = runCLI(t, "verify", "--threads", "1", "--tokens", "16", "--json")
	var r struct {
		Checks []struct {
			Name string
			Pass bool
		}
	}
	if err := json.Unmarshal([]byte(out), &r); st != 0 || err != nil || len(r.Checks) != 8 {
		t.Fatalf("--json: status %d, %v: %s %s", st, err, out, errOut)
	}
	out, errOut, st = runCLI(t, "verify", "--threads", "1", "--tokens", "16", "--drift", "32")
	if st != 0 || !strings.Contains(out, "q8 weights against f32, 32 tokens") || strings.Contains(out, "FAIL") {
		t.Fatalf("--drift: status %d\n%s\n%s", st, out, errOut)
	}
	if _, errOut, st = runCLI(t, "verify", "--threads", "1", "--tokens", "16", "--drift", "32", "--drift-tol", "0"); st != 1 || !strings.Contains(errOut, "q8 weights against f32") {
		t.Fatalf("--drift-tol 0: status %d, %s", st, errOut)
	}
}

// TestGenerateCacheDir checks --cache-dir: a second run of a prompt finds
// its states on disk and prints what the first printed, and the flags it
// cannot go with are refused.
func TestGenerateCacheDir(t *testing.T) {
	dir := t.TempDir()
	prompt := strings.Repeat("func f() int { return 1 }\n", 20)
	args := []string{"generate", "--temperature", "0", "--max-tokens", "8", "--threads", "1", "--cache-dir", dir, "--cache-every", "16", prompt}
	first, errOut, st := runCLI(t, args...)
	if st != 0 {
		t.Fatalf("status %d: %s", st, errOut)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil || len(files) < 2 {
		t.Fatalf("%d state files in the cache directory (%v)", len(files), err)
	}
	if again, errOut, st := runCLI(t, args...); st != 0 || again != first {
		t.Fatalf("second run: status %d %s\n%q\nfirst:\n%q", st, errOut, again, first)
	}
	for _, bad := range [][]string{
		{"--cache-dir", dir, "--save-state", filepath.Join(dir, "s"), "x"},
		{"--cache-dir", dir, "--cache-size", "lots", "x"},
		{"--cache-dir", dir, "a", "b"},
	} {
		if _, errOut, st := runCLI(t, append([]string{"generate", "--max-tokens", "1"}, bad...)...); st == 0 || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: status %d, stderr %q", bad, st, errOut)
		}
	}
}

// TestTuneState tunes the built-in model's initial state on a few Go
// files: the state file it writes is one generate --state starts from,
// the loss from the tuned state is reported, and bad flags are refused.
func TestTuneState(t *testing.T) {
	dir := t.TempDir()
	for i := range 12 {
		var b strings.Builder
		for j := range 20 {
			fmt.Fprintf(&b, "func (p *parser) parse%d_%d(s string) (int, error) {\n\treturn strconv.Atoi(s[%d:])\n}\n\n", i, j, j%5)
		}
		writeFile(t, dir, fmt.Sprintf("pkg/f%02d.go", i), b.String())
	}
	state := filepath.Join(dir, "tuned.safetensors")
	_, errOut, st := runCLI(t, "tune-state", "--data", filepath.Join(dir, "pkg"), "--out", state, "--steps", "6", "--seq-len", "32",
		"--batch-size", "4", "--eval-every", "3", "--eval-batches", "2", "--val-fraction", "0.2", "--threads", "1")
	if st != 0 || !strings.Contains(errOut, "from the tuned state") {
		t.Fatalf("tune-state: status %d\n%s", st, errOut)
	}
	snap, err := checkpoint.ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Batch != 1 || snap.Tokens != 8 || snap.WeightsHash == "" {
		t.Fatalf("tuned state: %d sequences at %d tokens, weights %q; want 1 at --prefix 8, of the built-in weights", snap.Batch, snap.Tokens, snap.WeightsHash)
	}
	if _, errOut, st := runCLI(t, "generate", "--state", state, "--max-tokens", "4", "--temperature", "0", "--threads", "1", "func"); st != 0 {
		t.Fatalf("generate from the tuned state: status %d: %s", st, errOut)
	}
	ppl := func(args ...string) string {
		t.Helper()
		out, errOut, st := runCLI(t, append([]string{"eval", "ppl", "--data", filepath.Join(dir, "pkg"), "--threads", "1", "--json"}, args...)...)
		if st != 0 {
			t.Fatalf("eval ppl %v: status %d: %s", args, st, errOut)
		}
		return out
	}
	if plain, tuned := ppl("--doc-resets"), ppl("--doc-resets", "--state", state); plain == tuned {
		t.Fatalf("eval ppl from the tuned state is that from an empty one: %s", plain)
	}

	// Stopped after its second step, it saves the state of that step.
	stopped := filepath.Join(dir, "stopped.safetensors")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err = Execute(ctx, []string{"tune-state", "--data", filepath.Join(dir, "pkg"), "--out", stopped, "--steps", "50", "--seq-len", "32", "--batch-size", "2", "--threads", "1"},
		Options{Events: func(e Event) {
			if e.Kind == EventStep && e.Step.Step == 2 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled tune-state: %v", err)
	}
	if _, err := checkpoint.ReadState(stopped); err != nil {
		t.Fatalf("the state of a stopped tune-state: %v", err)
	}

	// A small RetNet with the built-in tokenizer: its state must stand past
	// position 0.
	retnetDir := filepath.Join(dir, "retnet")
	cfg := writeFile(t, dir, "retnet.json", `{"model_type": "retnet", "vocab_size": 4096, "hidden_size": 16, "query_key_dim": 16, "value_dim": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "ffn_dim": 32}`)
	if _, errOut, st := runCLI(t, "init", "--arch", "retnet", "--config", cfg, "--out", retnetDir); st != 0 {
		t.Fatalf("init: %s", errOut)
	}
	tok, err := defaultmodel.TokenizerJSON()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, retnetDir, "tokenizer.json", string(tok))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--data", filepath.Join(dir, "pkg"), "--out", state + "2", "--prefix", "-1"}, "--prefix -1"},
		{[]string{"--data", filepath.Join(dir, "missing"), "--out", state + "2"}, "--data"},
		{[]string{"--data", filepath.Join(dir, "pkg"), "--out", state + "2", "--weights", "q8"}, "F32"},
		{[]string{"--data", filepath.Join(dir, "pkg"), "--out", state + "2", "--model", retnetDir, "--prefix", "0"}, "--prefix 0"},
		{[]string{"eval", "ppl", "--data", filepath.Join(dir, "pkg"), "--mode", "parallel", "--state", state}, "--state"},
		{[]string{"eval", "ppl", "--data", filepath.Join(dir, "pkg"), "--mode", "parallel", "--doc-resets"}, "--doc-resets"},
	} {
		args := c.args
		if args[0] != "eval" {
			args = append([]string{"tune-state", "--steps", "1"}, args...)
		}
		_, errOut, st := runCLI(t, append(args, "--threads", "1")...)
		if st == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: status %d, stderr %q; want an error saying %q", c.args, st, errOut, c.want)
		}
	}
}
