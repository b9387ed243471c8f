//go:build mpi

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/densessm/densessm/train"
)

// These tests run densessm-mpi under mpirun on this machine's loopback
// (make mpi-test; they need Open MPI's mpirun on PATH). Every rank runs one
// backend thread, so that up to 3 ranks fit 2 cores (--oversubscribe).

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "densessm-mpi-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "densessm-mpi")
	build := exec.Command("go", "build", "-tags", "mpi", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build densessm-mpi:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// setup writes a small Go corpus and the configuration of a tiny
// DenseMamba trained for steps steps on batches of 6 sequences (which 1, 2
// and 3 ranks divide); it returns the arguments of a run into out.
func setup(t *testing.T, steps int) func(out string) []string {
	t.Helper()
	in := t.TempDir()
	if err := os.Mkdir(filepath.Join(in, "corpus"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		var b strings.Builder
		for j := range 30 {
			fmt.Fprintf(&b, "func f%d_%d(x int) int {\n\treturn x * %d\n}\n", i, j, (i*j)%7)
		}
		if err := os.WriteFile(filepath.Join(in, "corpus", fmt.Sprintf("doc%02d.go", i)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(in, "train.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `arch: densemamba
model: {hidden_size: 32, num_hidden_layers: 2, state_size: 4, expand: 2}
vocab-size: 300
steps: %d
seq-len: 64
batch-size: 6
lr: 0.005
warmup: 5
checkpoint-every: 10
eval-every: 10
eval-batches: 2
threads: 1
log-every: 1
`, steps), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(out string) []string {
		return []string{"train", "--config", cfg, "--data", filepath.Join(in, "corpus"), "--out", out}
	}
}

// mpirun returns the command that runs densessm-mpi args on n ranks.
func mpirun(ctx context.Context, n int, env []string, args ...string) *exec.Cmd {
	a := []string{"-np", strconv.Itoa(n), "--oversubscribe"}
	for _, kv := range env {
		a = append(a, "-x", kv)
	}
	cmd := exec.CommandContext(ctx, "mpirun", append(append(a, binary), args...)...)
	cmd.Env = os.Environ()
	if os.Geteuid() == 0 {
		cmd.Env = append(cmd.Env, "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs densessm-mpi args on n ranks and fails the test unless it
// succeeds; it returns the output.
func run(t *testing.T, n int, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := mpirun(ctx, n, nil, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mpirun -np %d %v: %v\n%s", n, args, err, out)
	}
	return string(out)
}

// curve returns the training losses and validation losses, by step, of
// the run in dir.
func curve(t *testing.T, dir string) (loss map[int]float64, val map[int]float64, tokens map[int]int64) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	loss, val, tokens = map[int]float64{}, map[int]float64{}, map[int]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct {
			Step    int      `json:"step"`
			Loss    *float64 `json:"loss"`
			ValLoss *float64 `json:"val_loss"`
			Tokens  int64    `json:"tokens"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Loss != nil {
			loss[r.Step], tokens[r.Step] = *r.Loss, r.Tokens
		}
		if r.ValLoss != nil {
			val[r.Step] = *r.ValLoss
		}
	}
	return loss, val, tokens
}

// same fails the test unless got holds want's values at the steps from
// first on, within 1e-5 relative; it returns the largest difference.
func same(t *testing.T, what string, got, want map[int]float64, first, last int) float64 {
	t.Helper()
	worst := 0.0
	for s := first; s <= last; s++ {
		g, ok1 := got[s]
		w, ok2 := want[s]
		if !ok1 || !ok2 {
			t.Fatalf("%s: step %d missing (%v, %v)", what, s, ok1, ok2)
		}
		d := math.Abs(g-w) / math.Abs(w)
		worst = math.Max(worst, d)
		if d > 1e-5 {
			t.Errorf("%s: step %d: loss %.8f, want %.8f (relative difference %.2g)", what, s, g, w, d)
		}
	}
	return worst
}

// noneLeft fails the test if a process of densessm-mpi whose command
// line holds marker still runs.
func noneLeft(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := processes(marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left behind: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processes returns the pids of the densessm-mpi processes whose command
// line holds marker, with their MPI rank.
func processes(marker string) map[int]int {
	out := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(cmdline, []byte(binary+"\x00")) || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
			continue // a zombie: dead, not yet reaped
		}
		rank := -1
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("OMPI_COMM_WORLD_RANK=")); ok {
				rank, _ = strconv.Atoi(string(v))
			}
		}
		out[pid] = rank
	}
	return out
}

// TestLossCurves: 2 and 3 ranks sharing each batch of 6 train the curve
// of one rank on the whole batch, within 1e-5 relative over 20 steps
// (training and validation losses), and count the same tokens; resuming
// the 2-rank run's checkpoint of step 10 on 3 ranks continues that curve.
func TestLossCurves(t *testing.T) {
	const steps = 20
	args := setup(t, steps)
	tmp := t.TempDir()
	dirs := map[int]string{}
	for _, n := range []int{1, 2, 3} {
		dirs[n] = filepath.Join(tmp, fmt.Sprintf("ranks%d", n))
		out := run(t, n, args(dirs[n])...)
		if n > 1 && !strings.Contains(out, fmt.Sprintf("data parallel: %d ranks, each %d of the 6 sequences", n, 6/n)) {
			t.Errorf("%d ranks: output %s", n, out)
		}
	}
	want, wantVal, wantTokens := curve(t, dirs[1])
	for _, n := range []int{2, 3} {
		got, val, tokens := curve(t, dirs[n])
		worst := same(t, fmt.Sprintf("%d ranks", n), got, want, 1, steps)
		same(t, fmt.Sprintf("%d ranks, validation", n), val, wantVal, 10, 10)
		same(t, fmt.Sprintf("%d ranks, validation", n), val, wantVal, 20, 20)
		t.Logf("%d ranks: worst relative difference %.2g over %d steps (loss %.4f -> %.4f)", n, worst, steps, got[1], got[steps])
		for s, tok := range tokens {
			if tok != wantTokens[s] {
				t.Errorf("%d ranks, step %d: %d tokens, want %d", n, s, tok, wantTokens[s])
			}
		}
		if _, err := os.Stat(train.StepDir(dirs[n], steps)); err != nil {
			t.Errorf("%d ranks: no final checkpoint: %v", n, err)
		}
	}

	// Resume the 2-rank run from step 10 on 3 ranks.
	resumed := filepath.Join(tmp, "resumed")
	if err := exec.Command("cp", "-a", dirs[2], resumed).Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(train.StepDir(resumed, steps)); err != nil {
		t.Fatal(err)
	}
	out := run(t, 3, "train", "--resume", "--out", resumed)
	if !strings.Contains(out, "from step 10") {
		t.Errorf("resume: output %s", out)
	}
	got, val, _ := curve(t, resumed)
	worst := same(t, "2-rank checkpoint resumed on 3 ranks", got, want, 1, steps)
	same(t, "resumed, validation", val, wantVal, 20, 20)
	t.Logf("resumed on 3 ranks: worst relative difference %.2g", worst)
}

// TestKilledRank: when one rank is killed mid-run, the job ends with an
// error naming it, and no process is left.
func TestKilledRank(t *testing.T) {
	args := setup(t, 100000)
	out := filepath.Join(t.TempDir(), "killed")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := mpirun(ctx, 2, nil, args(out)...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill rank 1 once the first checkpoint is written: mid-run.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(train.StepDir(out, 10)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no checkpoint after 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	killed := -1
	for pid, rank := range processes(out) {
		if rank == 1 {
			killed = pid
		}
	}
	if killed < 0 {
		cmd.Process.Kill()
		t.Fatalf("rank 1 not found among %v", processes(out))
	}
	start := time.Now()
	if err := exec.Command("kill", "-KILL", strconv.Itoa(killed)).Run(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	t.Logf("mpirun ended %.1f s after the kill: %v\n%s", time.Since(start).Seconds(), err, output.String())
	if err == nil || ctx.Err() != nil {
		t.Fatalf("mpirun: %v (context %v), want a failure", err, ctx.Err())
	}
	if !strings.Contains(output.String(), "rank 1") || !strings.Contains(output.String(), "signal 9") {
		t.Errorf("the output does not name rank 1 and its signal")
	}
	noneLeft(t, out)
}

// TestRankError: an error on one rank (here RANK set against MPI's) is
// printed naming the rank, and ends every rank.
func TestRankError(t *testing.T) {
	args := setup(t, 20)
	out := filepath.Join(t.TempDir(), "bad")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := mpirun(ctx, 2, []string{"RANK=0", "WORLD_SIZE=2"}, args(out)...).CombinedOutput()
	if err == nil {
		t.Fatalf("RANK=0 on every rank: no error\n%s", b)
	}
	if !strings.Contains(string(b), "densessm-mpi: rank 1 of 2: RANK=0, but MPI made this process rank 1 of 2") {
		t.Errorf("output %s", b)
	}
	noneLeft(t, out)

	// A batch the ranks do not divide: every rank says so, naming itself.
	b, err = mpirun(ctx, 4, nil, args(out+"4")...).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "rank 0 of 4: --batch-size 6: the global batch is shared by 4 ranks") {
		t.Errorf("batch 6 on 4 ranks: %v\n%s", err, b)
	}
	noneLeft(t, out+"4")
}

// TestWithoutMPI: run as a plain process, densessm-mpi is one rank, and
// commands other than train are refused.
func TestWithoutMPI(t *testing.T) {
	b, err := exec.Command(binary, "generate", "x").CombinedOutput()
	if err == nil || !strings.Contains(string(b), "runs train only") {
		t.Errorf("generate: %v %s", err, b)
	}
}
