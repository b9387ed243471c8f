package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/densessm/densessm/defaultmodel"
	"github.com/densessm/densessm/train"
)

// trainSetup writes a small corpus and a run configuration of a tiny
// DenseMamba; it returns the arguments of a run into out.
func trainSetup(t *testing.T, steps int) (args func(out string) []string) {
	t.Helper()
	in := t.TempDir()
	for i := range 40 {
		var b strings.Builder
		for j := range 30 {
			fmt.Fprintf(&b, "func f%d_%d(x int) int {\n\treturn x * %d\n}\n", i, j, (i*j)%7)
		}
		writeFile(t, in, fmt.Sprintf("corpus/doc%02d.go", i), b.String())
	}
	cfg := writeFile(t, in, "train.yaml", fmt.Sprintf(`arch: densemamba
model: {hidden_size: 32, num_hidden_layers: 2, state_size: 4, expand: 2}
vocab-size: 300
steps: %d
seq-len: 64
batch-size: 4
lr: 0.005
warmup: 5
checkpoint-every: 10
eval-every: 10
eval-batches: 2
threads: 1
log-every: 1
`, steps))
	return func(out string) []string {
		return []string{"train", "--config", cfg, "--data", filepath.Join(in, "corpus"), "--out", out}
	}
}

// readMetrics returns the records of a run's metrics.jsonl.
func readMetrics(t *testing.T, dir string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, metricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range bytes.Lines(raw) {
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		delete(r, "tokens_per_s")
		delete(r, "elapsed_s")
		out = append(out, r)
	}
	return out
}

// TestTrainInterruptAndResume runs `densessm train` straight, and again
// interrupted by SIGINT in a child process and resumed: the resumed run
// must print how to resume, exit 130, and end with the same losses and the
// same weights as the straight run.
func TestTrainInterruptAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice")
	}
	const steps = 120
	args := trainSetup(t, steps)
	straight := filepath.Join(t.TempDir(), "straight")
	if _, stderr, st := runCLI(t, args(straight)...); st != 0 {
		t.Fatalf("straight run: status %d: %s", st, stderr)
	}

	resumed := filepath.Join(t.TempDir(), "resumed")
	cmd, stderr := child(t, nil, args(resumed)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt after the first checkpoint, mid-run.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(train.StepDir(resumed, 10)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no checkpoint after 60 s: %s", stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := waitAtMost(cmd, 30*time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
		t.Fatalf("interrupted run: %v, want status 130; stderr %s", err, stderr)
	}
	if !strings.Contains(stderr.String(), "resume with: densessm train --resume --out "+resumed) {
		t.Fatalf("no resume hint in %q", stderr)
	}
	_, stopped, ok, err := train.Latest(resumed)
	if err != nil || !ok || stopped >= steps {
		t.Fatalf("after the interrupt the newest checkpoint is step %d (%v, %v), want one before %d", stopped, ok, err, steps)
	}
	t.Logf("interrupted after step %d", stopped)
	if _, stderr, st := runCLI(t, "train", "--resume", "--threads", "1", "--out", resumed); st != 0 {
		t.Fatalf("resume: status %d: %s", st, stderr)
	}

	want, got := readMetrics(t, straight), readMetrics(t, resumed)
	if len(want) != steps+steps/10 || fmt.Sprint(want) != fmt.Sprint(got) {
		t.Fatalf("metrics differ:\nstraight %v\nresumed  %v", want, got)
	}
	a, _ := os.ReadFile(filepath.Join(straight, "model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(resumed, "model.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatal("the resumed run's weights differ from the straight run's")
	}
	if first, last := want[0]["loss"].(float64), want[len(want)-2]["loss"].(float64); !(last < first-1) {
		t.Errorf("loss went from %.3f to %.3f, want a fall of more than 1 nat", first, last)
	}
	if _, err := os.Stat(filepath.Join(straight, lossPlotFile)); err != nil {
		t.Errorf("no loss plot: %v", err)
	}
	// The run directory is a model directory generate and eval read.
	out, stderr2, st := runCLI(t, "generate", "--model", straight, "--max-tokens", "8", "--seed", "1", "--json", "func")
	if st != 0 || !strings.Contains(out, `"seed":1`) {
		t.Fatalf("generate from the trained model: %d %q %s", st, out, stderr2)
	}
}

// TestTrainRefusesToOverwrite checks that a second run into the same
// directory must say --resume.
func TestTrainRefusesToOverwrite(t *testing.T) {
	args := trainSetup(t, 6)
	dir := filepath.Join(t.TempDir(), "run")
	if _, stderr, st := runCLI(t, args(dir)...); st != 0 {
		t.Fatalf("status %d: %s", st, stderr)
	}
	if _, stderr, st := runCLI(t, args(dir)...); st == 0 || !strings.Contains(stderr, "--resume") {
		t.Fatalf("second run: status %d, %q", st, stderr)
	}
}

// TestEvalPPLMaxTokensCountsKeptBytes checks that bits per byte cover the
// text of the tokens scored when --max-tokens cuts a document.
func TestEvalPPLMaxTokensCountsKeptBytes(t *testing.T) {
	text := "package main\n\nfunc main() {\n\tprintln(\"hello\")\n}\n"
	file := writeFile(t, t.TempDir(), "a.go", text)
	tok, err := defaultmodel.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tok.EncodeFull(text, false)
	if err != nil || len(enc.IDs) < 8 {
		t.Fatalf("%d ids, %v", len(enc.IDs), err)
	}
	out, stderr, st := runCLI(t, "eval", "ppl", "--data", file, "--max-tokens", "5", "--json")
	if st != 0 {
		t.Fatalf("status %d: %s", st, stderr)
	}
	var r struct{ Tokens, Bytes int64 }
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Tokens != 4 || r.Bytes != int64(enc.Offsets[4][1]) {
		t.Fatalf("scored %d tokens over %d bytes, want 4 over %d (%q)", r.Tokens, r.Bytes, enc.Offsets[4][1], text[:enc.Offsets[4][1]])
	}
}
