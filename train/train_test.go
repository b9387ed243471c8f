package train

import (
	"context"
	"errors"
	"iter"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/internal/atomicfile"

	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/backends/cpu"
)

const tinyConfig = `{"model_type":"densemamba","vocab_size":32,"hidden_size":16,"num_hidden_layers":2,"state_size":4,"expand":2,"conv_kernel":4}`

func backend(t *testing.T) api.Backend {
	t.Helper()
	b, err := api.NewBackend("cpu", api.BackendOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tinyModel(t *testing.T, b api.Backend, seed int64) api.Trainable {
	t.Helper()
	a, err := api.LookupArchitecture("densemamba")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.ParseConfig([]byte(tinyConfig))
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.New(context.Background(), cfg, api.BuildOptions{On: b, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return m.(api.Trainable)
}

// memSource serves blocks of a token slice in an order that depends on the
// seed and the epoch, like data.Loader, without files.
type memSource struct {
	tokens       []int32
	seq, batch   int
	seed         uint64
	epoch, index int64
	order        []int
}

func newMemSource(tokens []int32, seq, batch int, seed uint64) *memSource {
	s := &memSource{tokens: tokens, seq: seq, batch: batch, seed: seed}
	s.shuffle()
	return s
}

func (s *memSource) blocks() int { return (len(s.tokens) - 1) / s.seq }

func (s *memSource) shuffle() {
	n := s.blocks()
	s.order = make([]int, n)
	x := s.seed*1000003 + uint64(s.epoch)*7919 + 1
	for i := range s.order {
		s.order[i] = i
	}
	for i := n - 1; i > 0; i-- {
		x = x*6364136223846793005 + 1442695040888963407
		j := int((x >> 33) % uint64(i+1))
		s.order[i], s.order[j] = s.order[j], s.order[i]
	}
}

func (s *memSource) Next(ctx context.Context) (api.Batch, error) {
	if err := ctx.Err(); err != nil {
		return api.Batch{}, err
	}
	per := int64(s.blocks() / s.batch)
	if s.index == per {
		s.epoch, s.index = s.epoch+1, 0
		s.shuffle()
	}
	var b api.Batch
	for k := range s.batch {
		i := s.order[int(s.index)*s.batch+k] * s.seq
		b.Inputs = append(b.Inputs, slices.Clone(s.tokens[i:i+s.seq]))
		b.Targets = append(b.Targets, slices.Clone(s.tokens[i+1:i+s.seq+1]))
	}
	s.index++
	return b, nil
}

func (s *memSource) Position() data.Position { return data.Position{Epoch: s.epoch, Batch: s.index} }

func (s *memSource) Seek(p data.Position) error {
	s.epoch, s.index = p.Epoch, p.Batch
	s.shuffle()
	return nil
}

// corpus is a learnable token stream: a repeated pattern with a little
// variation.
func corpus() []int32 {
	var out []int32
	for i := range 600 {
		out = append(out, int32(i%7), int32(7+i%5), int32(12+(i/3)%4))
	}
	return out
}

func testConfig(steps int) Config {
	c := DefaultConfig()
	c.Steps, c.BatchSize, c.SeqLen = steps, 2, 16
	c.Optimizer.LR = 1e-2
	c.Schedule = Schedule{Kind: Cosine, Warmup: 2, MinRatio: 0.1}
	c.CheckpointEvery, c.EvalEvery = 0, 0
	return c
}

// run trains a fresh tiny model for cfg.Steps and returns its losses and
// final weights.
func run(t *testing.T, cfg Config, dir string) ([]float64, [][]float32) {
	t.Helper()
	m, tr := newTrainer(t, cfg, dir)
	var losses []float64
	tr.OnStep = func(s StepMetrics) { losses = append(losses, s.Loss) }
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return losses, weights(m)
}

// newTrainer returns a fresh tiny model, seeded by cfg.Seed, and its
// trainer on corpus(), saving into dir.
func newTrainer(t *testing.T, cfg Config, dir string) (api.Trainable, *Trainer) {
	t.Helper()
	m := tinyModel(t, backend(t), int64(cfg.Seed))
	tr, err := New(m, cfg, newMemSource(corpus(), cfg.SeqLen, cfg.BatchSize, cfg.Seed))
	if err != nil {
		t.Fatal(err)
	}
	tr.Dir = dir
	return m, tr
}

func weights(m api.Model) [][]float32 {
	var out [][]float32
	for _, p := range m.(api.LocalModel).Parameters() {
		out = append(out, api.Float32s(p.Value))
	}
	return out
}

// TestLossFalls trains on corpus(), whose tokens cycle through three
// groups: a model that knew only the group of the next token would have a
// loss of (ln 7 + ln 5 + ln 4)/3 = 1.647 nats; going below it needs the
// context that the recurrence carries.
func TestLossFalls(t *testing.T) {
	losses, _ := run(t, testConfig(80), "")
	first, last := losses[0], losses[len(losses)-1]
	if !(first > 3.3 && last < 1.5) {
		t.Fatalf("loss went from %.4f to %.4f in 80 steps, want from about ln 32 = 3.47 to below 1.5", first, last)
	}
}

func TestDeterministic(t *testing.T) {
	a, wa := run(t, testConfig(8), "")
	b, wb := run(t, testConfig(8), "")
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different losses:\n%v\n%v", a, b)
	}
	if !equalWeights(wa, wb) {
		t.Fatal("same seed, different weights")
	}
	cfg := testConfig(8)
	cfg.Seed = 2
	c, _ := run(t, cfg, "")
	if slices.Equal(a, c) {
		t.Fatal("seeds 1 and 2 gave the same losses")
	}
}

func equalWeights(a, b [][]float32) bool {
	return slices.EqualFunc(a, b, func(x, y []float32) bool { return slices.Equal(x, y) })
}

// resume loads the newest checkpoint under dir and trains to steps.
func resume(t *testing.T, dir string, steps int, onStep func(StepMetrics)) (api.Trainable, error) {
	t.Helper()
	path, _, ok, err := Latest(dir)
	if err != nil || !ok {
		t.Fatalf("no checkpoint in %s: %v", dir, err)
	}
	st, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	model, err := checkpoint.LoadModel(context.Background(), path, checkpoint.LoadOptions{Build: api.BuildOptions{On: backend(t)}})
	if err != nil {
		t.Fatal(err)
	}
	m := model.(api.Trainable)
	cfg := st.Config
	cfg.Steps = steps
	tr, err := New(m, cfg, newMemSource(corpus(), cfg.SeqLen, cfg.BatchSize, cfg.Seed))
	if err != nil {
		t.Fatal(err)
	}
	tr.Dir, tr.OnStep = dir, onStep
	if err := tr.Restore(path); err != nil {
		t.Fatal(err)
	}
	return m, tr.Run(context.Background())
}

func TestResumeEqualsStraightRun(t *testing.T) {
	cfg := testConfig(20)
	cfg.Accum = 2
	straight, want := run(t, cfg, "")

	// Stop the same run after step 10 by cancelling it, then resume.
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, tr := newTrainer(t, cfg, dir)
	var losses []float64
	tr.OnStep = func(s StepMetrics) {
		losses = append(losses, s.Loss)
		if s.Step == 10 {
			cancel()
		}
	}
	err := tr.Run(ctx)
	var intr *Interrupted
	if !errors.As(err, &intr) || intr.Step != 10 || intr.Checkpoint != StepDir(dir, 10) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v, want Interrupted at step 10 saved in %s", err, StepDir(dir, 10))
	}
	got, err := resume(t, dir, 20, func(s StepMetrics) { losses = append(losses, s.Loss) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(straight, losses) {
		t.Fatalf("resumed losses differ:\nstraight %v\nresumed  %v", straight, losses)
	}
	if !equalWeights(want, weights(got)) {
		t.Fatal("resumed weights differ from the straight run's")
	}
	// Dir itself is the newest model.
	if _, err := checkpoint.LoadModel(context.Background(), dir, checkpoint.LoadOptions{Build: api.BuildOptions{On: backend(t)}}); err != nil {
		t.Fatalf("the run directory is not a loadable model: %v", err)
	}
}

func TestNaNNamesStep(t *testing.T) {
	m, tr := newTrainer(t, testConfig(10), "")
	tr.OnStep = func(s StepMetrics) {
		if s.Step == 3 {
			p := m.Parameters()[0].Value.(api.HostFloat32s)
			p.HostFloat32s()[0] = float32(math.NaN())
		}
	}
	err := tr.Run(context.Background())
	if !errors.Is(err, ErrNotFinite) || !strings.Contains(err.Error(), "step 4") {
		t.Fatalf("got %v, want a not-finite error naming step 4", err)
	}
	if tr.Step() != 3 {
		t.Fatalf("stopped at step %d, want 3 (the bad update not applied)", tr.Step())
	}
}

func TestInterruptedSaveKeepsPreviousCheckpoint(t *testing.T) {
	cfg := testConfig(4)
	cfg.CheckpointEvery, cfg.Keep = 2, 3
	dir := t.TempDir()
	_, tr := newTrainer(t, cfg, dir)
	tr.Files = map[string][]byte{"tokenizer.json": []byte("{}")}
	tr.OnStep = func(s StepMetrics) {
		if s.Step == 4 { // the disk fills up during step 4's save
			restore := atomicfile.InjectFault(atomicfile.FullDisk(1000))
			t.Cleanup(restore)
		}
	}
	if err := tr.Run(context.Background()); err == nil {
		t.Fatal("a save onto a full disk succeeded")
	}
	path, step, ok, err := Latest(dir)
	if err != nil || !ok || step != 2 {
		t.Fatalf("latest checkpoint %s step %d ok %v err %v, want step 2", path, step, ok, err)
	}
	if _, err := checkpoint.LoadModel(context.Background(), path, checkpoint.LoadOptions{Build: api.BuildOptions{On: backend(t)}}); err != nil {
		t.Fatalf("previous checkpoint not loadable: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, CheckpointsDir))
	if len(entries) != 1 {
		t.Fatalf("checkpoints dir holds %d entries, want only step 2's (no temporary left)", len(entries))
	}
	if _, err := ReadState(path); err != nil {
		t.Fatal(err)
	}
}

func TestKeepPrunesOldCheckpoints(t *testing.T) {
	cfg := testConfig(6)
	cfg.CheckpointEvery, cfg.Keep = 1, 2
	dir := t.TempDir()
	run(t, cfg, dir)
	steps, err := listSteps(dir)
	if err != nil || !slices.Equal(steps, []int{5, 6}) {
		t.Fatalf("kept %v (%v), want [5 6]", steps, err)
	}
}

func TestAccumulationEqualsBigBatch(t *testing.T) {
	// Two micro-batches of 2 sequences give the gradient of one batch of 4
	// (each micro-batch has the same number of targets).
	b := backend(t)
	m1, m2 := tinyModel(t, b, 3), tinyModel(t, b, 3)
	src := newMemSource(corpus(), 16, 4, 1)
	big, _ := src.Next(context.Background())
	m1.ZeroGrad()
	if _, err := m1.LossAndGrad(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	m2.ZeroGrad()
	for _, half := range []api.Batch{{Inputs: big.Inputs[:2], Targets: big.Targets[:2]}, {Inputs: big.Inputs[2:], Targets: big.Targets[2:]}} {
		if _, err := m2.LossAndGrad(context.Background(), half); err != nil {
			t.Fatal(err)
		}
	}
	g1, g2 := m1.Grads(), m2.Grads()
	for i := range g1 {
		a, c := api.Float32s(g1[i].Value), api.Float32s(g2[i].Value)
		for j := range a {
			if d := math.Abs(float64(a[j] - c[j]/2)); d > 1e-5*math.Max(1, math.Abs(float64(a[j]))) {
				t.Fatalf("%s[%d]: big batch %g, accumulated/2 %g", g1[i].Name, j, a[j], c[j]/2)
			}
		}
	}
}

func TestRestoreRefusesOtherSettings(t *testing.T) {
	cfg := testConfig(2)
	dir := t.TempDir()
	run(t, cfg, dir)
	path := StepDir(dir, 2)
	other := cfg
	other.Optimizer.LR = 5e-3
	other.Steps = 4
	m := tinyModel(t, backend(t), 1)
	tr, err := New(m, other, newMemSource(corpus(), cfg.SeqLen, cfg.BatchSize, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Restore(path); !errors.Is(err, api.ErrConfig) {
		t.Fatalf("restore under another learning rate: %v, want ErrConfig", err)
	}
}

// TestDocResets checks that with Config.DocResets a step trains on the
// batch with its documents reset after each separator, and that the
// trainer refuses the option for a model that takes no packed batches.
func TestDocResets(t *testing.T) {
	b := backend(t)
	cfg := testConfig(1)
	cfg.Schedule.Warmup = 0
	const sep = 3 // frequent in corpus(): every block holds several
	tr, err := New(tinyModel(t, b, 4), cfg, newMemSource(corpus(), cfg.SeqLen, cfg.BatchSize, cfg.Seed))
	if err != nil {
		t.Fatal(err)
	}
	tr.Separator = sep
	var got float64
	tr.OnStep = func(s StepMetrics) { got = s.Loss }
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	batch, _ := newMemSource(corpus(), cfg.SeqLen, cfg.BatchSize, cfg.Seed).Next(context.Background())
	batch.Starts = data.DocumentStarts(batch.Inputs, sep)
	if batch.Starts == nil {
		t.Fatal("the first batch has no separator")
	}
	want, err := tinyModel(t, b, 4).LossAndGrad(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	batch.Starts = nil
	whole, err := tinyModel(t, b, 4).LossAndGrad(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || got == whole {
		t.Fatalf("step loss %v; the batch with resets %v, without %v", got, want, whole)
	}

	_, err = New(unpacked{tinyModel(t, b, 4)}, cfg, newMemSource(corpus(), cfg.SeqLen, cfg.BatchSize, cfg.Seed))
	if !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), "--doc-resets=false") {
		t.Fatalf("document resets on a model without packed batches: %v", err)
	}
	cfg.DocResets = false
	if _, err := New(unpacked{tinyModel(t, b, 4)}, cfg, newMemSource(corpus(), cfg.SeqLen, cfg.BatchSize, cfg.Seed)); err != nil {
		t.Fatalf("without document resets: %v", err)
	}
}

// unpacked is a model that says it takes no packed batches.
type unpacked struct{ api.Trainable }

func (u unpacked) Info() api.Info {
	i := u.Trainable.Info()
	i.Packed = false
	return i
}

// TestStateTuning checks that StateTuning lowers the loss by learning the
// initial state alone: the weights stay as they were, and an interrupted
// run leaves the state of its last step.
func TestStateTuning(t *testing.T) {
	ctx := context.Background()
	b := backend(t)
	m := tinyModel(t, b, 4)
	tuner := m.(api.StateTuner)
	before, err := m.ReadParams(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(60)
	cfg.Optimizer.LR, cfg.Optimizer.WeightDecay = 0.3, 0
	cfg.EvalBatches = 4
	init, err := m.NewState(1)
	if err != nil {
		t.Fatal(err)
	}
	eval := func() iter.Seq2[api.Batch, error] {
		src := newMemSource(corpus(), cfg.SeqLen, cfg.BatchSize, 99)
		return func(yield func(api.Batch, error) bool) {
			for range 4 {
				if !yield(src.Next(ctx)) {
					return
				}
			}
		}
	}
	start, _, err := StateMeanLoss(ctx, tuner, init, eval(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var losses []float64
	st := &StateTuning{Model: tuner, Config: cfg, Src: newMemSource(corpus(), cfg.SeqLen, cfg.BatchSize, 1), Separator: -1, Eval: eval,
		OnEval: func(e EvalMetrics) { losses = append(losses, e.Loss) }}
	if err := st.Run(ctx, init); err != nil {
		t.Fatal(err)
	}
	// A random model's state reaches only the first tokens of each block:
	// 60 steps take 0.09 nats off here.
	if len(losses) != 1 || !(losses[0] < start-0.05) {
		t.Fatalf("validation loss %.4f before, %v after tuning the state", start, losses)
	}
	after, err := m.ReadParams(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if !slices.Equal(before[i].Data, after[i].Data) {
			t.Fatalf("state tuning changed the weight %s", before[i].Name)
		}
	}

	cancelled, cancel := context.WithCancel(ctx)
	st.OnStep = func(s StepMetrics) {
		if s.Step == 2 {
			cancel()
		}
	}
	st.OnEval = nil
	if err := st.Run(cancelled, init); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
}
