package cli

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/densessm/densessm/distributed"
	"github.com/densessm/densessm/train"
)

// TestTrainDataParallel runs train as 2 ranks of an in-process group (what
// densessm-mpi runs over MPI, without MPI): the same losses as one
// process on the whole batches within 1e-5 relative, one run directory
// written by rank 0, nothing printed by rank 1, and a resume on 2 ranks
// of the 1-process run's checkpoint that continues its curve.
func TestTrainDataParallel(t *testing.T) {
	if testing.Short() {
		t.Skip("trains three times")
	}
	const steps = 20
	args := trainSetup(t, steps)
	single := filepath.Join(t.TempDir(), "single")
	if _, stderr, st := runCLI(t, args(single)...); st != 0 {
		t.Fatalf("one process: status %d: %s", st, stderr)
	}
	ranks := func(args ...string) []string {
		comms := distributed.NewLocalGroup(2)
		out := make([]string, 2)
		var wg sync.WaitGroup
		for r, c := range comms {
			wg.Go(func() {
				var stdout, stderr bytes.Buffer
				if st := MainDataParallel(args, strings.NewReader(""), &stdout, &stderr, c); st != 0 {
					t.Errorf("rank %d: status %d: %s", r, st, stderr.String())
				}
				out[r] = stdout.String() + stderr.String()
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return out
	}
	parallel := filepath.Join(t.TempDir(), "parallel")
	out := ranks(args(parallel)...)
	if !strings.Contains(out[0], "data parallel: 2 ranks, each 2 of the 4 sequences") || !strings.Contains(out[0], "all-reduce: ") || out[1] != "" {
		t.Errorf("rank 0 printed %q\nrank 1 printed %q", out[0], out[1])
	}
	compare := func(what, dir string) {
		t.Helper()
		want, got := readMetrics(t, single), readMetrics(t, dir)
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
		}
		worst := 0.0
		for i, w := range want {
			for _, k := range []string{"loss", "val_loss"} {
				if _, ok := w[k]; !ok {
					continue
				}
				g, _ := got[i][k].(float64)
				d := math.Abs(g-w[k].(float64)) / w[k].(float64)
				worst = math.Max(worst, d)
				if d > 1e-5 || got[i]["step"] != w["step"] || got[i]["tokens"] != w["tokens"] {
					t.Errorf("%s: record %d: %v, want %v", what, i, got[i], w)
				}
			}
		}
		t.Logf("%s: worst relative difference %.2g", what, worst)
	}
	compare("2 ranks", parallel)

	// The one-process run's checkpoint of step 10 goes on, on 2 ranks.
	resumed := filepath.Join(t.TempDir(), "resumed")
	if err := os.CopyFS(resumed, os.DirFS(single)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(train.StepDir(resumed, steps)); err != nil {
		t.Fatal(err)
	}
	out = ranks("train", "--resume", "--out", resumed)
	if !strings.Contains(out[0], "from step 10") {
		t.Errorf("resume printed %q", out[0])
	}
	compare("resumed on 2 ranks", resumed)

	// A batch of 4 on 3 ranks is refused before anything is written.
	comms := distributed.NewLocalGroup(3)
	var stderr bytes.Buffer
	bad := filepath.Join(t.TempDir(), "bad")
	if st := MainDataParallel(args(bad), strings.NewReader(""), &stderr, &stderr, comms[0]); st == 0 || !strings.Contains(stderr.String(), "rank 0 of 3: --batch-size 4: the global batch is shared by 3 ranks") {
		t.Errorf("batch 4 on 3 ranks: status %d: %s", st, stderr.String())
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("batch 4 on 3 ranks wrote %s: %v", bad, err)
	}
}
