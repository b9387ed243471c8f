package distributed

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/train"

	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/backends/cpu"
)

const tinyConfig = `{"model_type":"densemamba","vocab_size":32,"hidden_size":16,"num_hidden_layers":2,"state_size":4,"expand":2,"conv_kernel":4}`

func tinyModel(t *testing.T, seed int64) api.Model {
	t.Helper()
	a, err := api.LookupArchitecture("densemamba")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.ParseConfig([]byte(tinyConfig))
	if err != nil {
		t.Fatal(err)
	}
	b, err := api.NewBackend("cpu", api.BackendOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.New(context.Background(), cfg, api.BuildOptions{On: b, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// source serves batch i of a fixed random sequence of batches, its
// position Batch = i.
type source struct {
	rows, seq int
	pos       data.Position
}

func (s *source) Next(ctx context.Context) (api.Batch, error) {
	r := rand.New(rand.NewPCG(uint64(s.pos.Batch), 7))
	var b api.Batch
	for range s.rows {
		row := make([]int32, s.seq+1)
		for j := range row {
			row[j] = int32(r.IntN(32))
		}
		b.Inputs = append(b.Inputs, row[:s.seq])
		b.Targets = append(b.Targets, row[1:])
	}
	s.pos.Batch++
	return b, nil
}

func (s *source) Position() data.Position    { return s.pos }
func (s *source) Seek(p data.Position) error { s.pos = p; return nil }

func config(steps int) train.Config {
	cfg := train.DefaultConfig()
	cfg.Steps, cfg.BatchSize, cfg.SeqLen, cfg.Accum = steps, 6, 16, 2
	cfg.Schedule.Warmup = 2
	cfg.Optimizer.LR = 0.01
	cfg.CheckpointEvery, cfg.EvalEvery = 0, 0
	cfg.DocResets = false
	return cfg
}

// run trains steps steps on n local ranks from step 0 and returns rank 0's
// losses and token counts, and each rank's final weights hash.
func run(t *testing.T, n, steps int) (losses []float64, tokens []int64, hashes []uint64) {
	t.Helper()
	comms := NewLocalGroup(n)
	hashes = make([]uint64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for rank, c := range comms {
		m := tinyModel(t, 3)
		src, err := Shard(&source{rows: 6, seq: 16}, rank, n)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := train.New(m, config(steps), src)
		if err != nil {
			t.Fatal(err)
		}
		red := NewGradReducer(c, 256) // small buckets: parameters cut across them
		if err := tr.SetReducer(red); err != nil {
			t.Fatal(err)
		}
		if rank == 0 {
			tr.OnStep = func(s train.StepMetrics) {
				losses = append(losses, s.Loss)
				tokens = append(tokens, s.Tokens)
			}
		}
		wg.Go(func() {
			errs[rank] = tr.Run(context.Background())
			hashes[rank] = WeightsHash(m.(api.Trainable))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return losses, tokens, hashes
}

// TestDataParallelMatchesOneRank: 2 and 3 ranks sharing batches of 6 rows
// give the losses of one rank on the whole batches, within float32
// rounding, count every rank's tokens, and keep the replicas equal.
func TestDataParallelMatchesOneRank(t *testing.T) {
	const steps = 20
	want, wantTokens, _ := run(t, 1, steps)
	for _, n := range []int{2, 3} {
		got, tokens, hashes := run(t, n, steps)
		if len(got) != steps {
			t.Fatalf("%d ranks: %d steps", n, len(got))
		}
		worst := 0.0
		for i := range got {
			worst = math.Max(worst, math.Abs(got[i]-want[i])/math.Abs(want[i]))
			if tokens[i] != wantTokens[i] {
				t.Fatalf("%d ranks, step %d: %d tokens, want %d", n, i+1, tokens[i], wantTokens[i])
			}
		}
		t.Logf("%d ranks: worst relative loss difference %.2g over %d steps (%.4f -> %.4f)", n, worst, steps, got[0], got[steps-1])
		if worst > 1e-5 {
			t.Errorf("%d ranks: losses %v, want %v (1e-5 relative)", n, got, want)
		}
		for r, h := range hashes {
			if h != hashes[0] {
				t.Errorf("%d ranks: rank %d's weights differ from rank 0's", n, r)
			}
		}
	}
}

func TestShard(t *testing.T) {
	src := &source{rows: 6, seq: 4}
	whole, _ := src.Next(context.Background())
	for _, n := range []int{1, 2, 3, 6} {
		var rows [][]int32
		for r := range n {
			s, err := Shard(&source{rows: 6, seq: 4}, r, n)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Next(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Inputs) != 6/n || s.Position().Batch != 1 {
				t.Fatalf("%d ranks: %d rows at %v", n, len(b.Inputs), s.Position())
			}
			rows = append(rows, b.Inputs...)
		}
		for i := range rows {
			if len(rows[i]) != 4 || rows[i][0] != whole.Inputs[i][0] || rows[i][3] != whole.Inputs[i][3] {
				t.Fatalf("%d ranks: row %d is not the global batch's", n, i)
			}
		}
	}
	s, _ := Shard(&source{rows: 6, seq: 4}, 0, 4)
	if _, err := s.Next(context.Background()); !errors.Is(err, api.ErrConfig) {
		t.Fatalf("6 rows on 4 ranks: %v, want ErrConfig", err)
	}
	if _, err := Shard(&source{}, 2, 2); !errors.Is(err, api.ErrConfig) {
		t.Fatalf("rank 2 of 2: %v", err)
	}
}

func TestCheckEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		env       func(string) string
		localRank int
		ok        bool
	}{
		{env(), 0, true},
		{env("RANK", "1", "WORLD_SIZE", "3", "LOCAL_RANK", "1", "MASTER_ADDR", "10.0.0.1"), 1, true},
		{env("LOCAL_RANK", "5"), -1, true}, // the transport does not know it
		{env("RANK", "0"), 1, false},
		{env("WORLD_SIZE", "4"), 1, false},
		{env("LOCAL_RANK", "0"), 1, false},
		{env("RANK", "one"), 1, false},
	} {
		err := CheckEnv(c.env, 1, 3, c.localRank)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, api.ErrConfig)) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestAgree(t *testing.T) {
	for _, vals := range [][]uint64{{7, 7, 7}, {1 << 63, 1 << 63}, {7, 7, 8}, {1<<40 + 1, 1 << 40}} {
		comms := NewLocalGroup(len(vals))
		errs := make([]error, len(vals))
		var wg sync.WaitGroup
		for r, c := range comms {
			wg.Go(func() { errs[r] = Agree(context.Background(), c, "weights", vals[r]) })
		}
		wg.Wait()
		same := true
		for _, v := range vals {
			same = same && v == vals[0]
		}
		for r, err := range errs {
			if (err == nil) != same || (err != nil && !errors.Is(err, api.ErrConfig)) {
				t.Errorf("%v, rank %d: %v", vals, r, err)
			}
		}
	}
}

// TestAbandonedCollective: a rank whose context ends while it waits for
// the others leaves the group broken for all.
func TestAbandonedCollective(t *testing.T) {
	comms := NewLocalGroup(2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := comms[0].Barrier(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("barrier alone: %v", err)
	}
	if err := comms[1].Barrier(context.Background()); !errors.Is(err, ErrBroken) {
		t.Fatalf("barrier after: %v", err)
	}
}
