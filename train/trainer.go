package train

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/data"
)

// Config is a training run's settings, all data: it is saved with every
// checkpoint and a resumed run continues under it.
type Config struct {
	// Steps is the number of optimizer updates of the whole run.
	Steps int `json:"steps"`
	// BatchSize sequences of SeqLen tokens make one micro-batch; Accum
	// micro-batches (gradient accumulation) make one update.
	BatchSize int `json:"batch_size"`
	SeqLen    int `json:"seq_len"`
	Accum     int `json:"grad_accum"`
	// Optimizer and Schedule set the update rule and the learning rate.
	Optimizer OptimizerConfig `json:"optimizer"`
	Schedule  Schedule        `json:"schedule"`
	// ClipNorm scales the gradients down when their global L2 norm is
	// above it (PyTorch's clip_grad_norm_); 0 turns clipping off.
	ClipNorm float64 `json:"clip_norm"`
	// Seed draws the initial weights and the data order.
	Seed uint64 `json:"seed"`
	// CheckpointEvery saves a checkpoint every so many steps (and always
	// at the end and on interruption); 0 saves only then.
	CheckpointEvery int `json:"checkpoint_every"`
	// EvalEvery measures the validation loss every so many steps over at
	// most EvalBatches batches (0: all); 0 evaluates only at the end.
	EvalEvery   int `json:"eval_every"`
	EvalBatches int `json:"eval_batches"`
	// Keep is how many step checkpoints stay on disk (at least 1).
	Keep int `json:"keep_checkpoints"`
	// DocResets resets the model's state where a document begins inside a
	// block (after each Trainer.Separator), in training and validation, so
	// that no token is predicted from another document; the dense links
	// keep to the same boundaries. It needs a model that takes packed
	// batches (api.Info.Packed). Runs saved before the option existed read
	// it as false and continue as they began.
	DocResets bool `json:"doc_resets"`
}

// DefaultConfig returns the settings `densessm train` starts from.
func DefaultConfig() Config {
	return Config{
		Steps: 1000, BatchSize: 8, SeqLen: 256, Accum: 1,
		Optimizer: DefaultOptimizer(),
		Schedule:  Schedule{Kind: Cosine, Warmup: 100, MinRatio: 0.1},
		ClipNorm:  1, Seed: 1, CheckpointEvery: 200, EvalEvery: 200, EvalBatches: 20, Keep: 2,
		DocResets: true,
	}
}

// Validate checks every field; errors name the command-line flag.
func (c Config) Validate() error {
	for _, f := range []struct {
		flag string
		v    int
		min  int
	}{
		{"steps", c.Steps, 1}, {"batch-size", c.BatchSize, 1}, {"seq-len", c.SeqLen, 1}, {"grad-accum", c.Accum, 1},
		{"checkpoint-every", c.CheckpointEvery, 0}, {"eval-every", c.EvalEvery, 0}, {"eval-batches", c.EvalBatches, 0}, {"keep", c.Keep, 1},
	} {
		if f.v < f.min {
			return fmt.Errorf("--%s %d: want at least %d: %w", f.flag, f.v, f.min, api.ErrConfig)
		}
	}
	if !(c.ClipNorm >= 0) || math.IsInf(c.ClipNorm, 0) {
		return fmt.Errorf("--clip %g: want a finite norm >= 0 (0: off): %w", c.ClipNorm, api.ErrConfig)
	}
	if err := c.Optimizer.Validate(); err != nil {
		return err
	}
	return c.Schedule.Validate(c.Steps)
}

// Source yields training batches and can say and restore where it is, so
// that a resumed run sees the batches a straight run would have seen.
// *data.Loader implements it.
type Source interface {
	Next(ctx context.Context) (api.Batch, error)
	Position() data.Position
	Seek(data.Position) error
}

// StepMetrics describes one completed update.
type StepMetrics struct {
	Step     int     `json:"step"`
	Loss     float64 `json:"loss"`
	LR       float64 `json:"lr"`
	GradNorm float64 `json:"grad_norm"`
	// Tokens is the number of target tokens trained on so far in the
	// run, resumed parts included.
	Tokens int64 `json:"tokens"`
	// TokensPerSec is this step's throughput.
	TokensPerSec float64 `json:"tokens_per_s"`
	// Elapsed is the run's training time so far, resumed parts included.
	Elapsed float64 `json:"elapsed_s"`
}

// EvalMetrics is a validation measurement.
type EvalMetrics struct {
	Step   int     `json:"step"`
	Loss   float64 `json:"val_loss"`
	Tokens int64   `json:"val_tokens"`
}

// Trainer runs a training loop on one model with checkpoints that resume
// exactly: the same seed, data and thread count give the same losses and
// weights whether a run is stopped and resumed or not.
type Trainer struct {
	model   api.Model
	stepper api.TrainStepper
	cfg     Config
	src     Source

	// Eval, if set, returns the validation batches (a fresh iteration on
	// each call).
	Eval func() iter.Seq2[api.Batch, error]
	// Dir is where checkpoints go (see Save); empty: none are written.
	Dir string
	// Files are written into every checkpoint besides the model
	// (tokenizer.json); they are small.
	Files map[string][]byte
	// Separator is the id that ends each document in the data (the
	// separator data.Build appended); with Config.DocResets a new document
	// begins after each. New sets it to -1: none.
	Separator int32
	// OnStep, OnEval and OnCheckpoint, if set, are called after each
	// update, validation and saved checkpoint.
	OnStep       func(StepMetrics)
	OnEval       func(EvalMetrics)
	OnCheckpoint func(step int, dir string)

	step    int     // updates completed
	tokens  int64   // target tokens trained on
	elapsed float64 // seconds of training before this process
	saved   int     // step of the last checkpoint written or loaded

	// reduced is the step's target count, this process's before the
	// Reducer runs and the whole run's after (see SetReducer).
	reducer Reducer
	reduced int64
}

// New returns a trainer of m on src under cfg, at step 0. m trains in its
// own process: see Stepper.
func New(m api.Model, cfg Config, src Source) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DocResets && !m.Info().Packed {
		return nil, fmt.Errorf("document resets: %s models do not take packed batches (api.Info.Packed); train with --doc-resets=false: %w", m.Info().Arch, api.ErrUnsupported)
	}
	st, err := Stepper(m)
	if err != nil {
		return nil, err
	}
	return &Trainer{model: m, stepper: st, cfg: cfg, src: src, saved: -1, Separator: -1}, nil
}

// Step returns the number of updates completed.
func (t *Trainer) Step() int { return t.step }

// Config returns the run's settings.
func (t *Trainer) Config() Config { return t.cfg }

// ErrNotFinite is wrapped by the error of a step whose loss or gradient
// holds a NaN or an infinity.
var ErrNotFinite = api.ErrNotFinite

// Interrupted is the error Run returns when its context is cancelled: the
// last completed step and the checkpoint that holds it (empty when
// nothing could be saved).
type Interrupted struct {
	Step       int
	Checkpoint string
	Err        error // the context's error, or the save's if it failed
}

func (e *Interrupted) Error() string {
	if e.Checkpoint == "" {
		return fmt.Sprintf("interrupted after step %d, not saved: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("interrupted after step %d, saved in %s", e.Step, e.Checkpoint)
}

func (e *Interrupted) Unwrap() error { return e.Err }

// Run trains until Config.Steps updates are done, evaluating and saving
// checkpoints on the way and at the end. When ctx is cancelled it stops
// between micro-batches, saves the last completed step (unless saved
// already) and returns an *Interrupted. A loss or gradient that is not
// finite stops it with an error naming the step, wrapping ErrNotFinite,
// before the bad update is applied.
func (t *Trainer) Run(ctx context.Context) error {
	for t.step < t.cfg.Steps {
		pos := t.src.Position()
		m, err := t.update(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return t.interrupted(ctx, pos)
			}
			return err
		}
		if t.OnStep != nil {
			t.OnStep(m)
		}
		last := t.step == t.cfg.Steps
		if last || (t.cfg.EvalEvery > 0 && t.step%t.cfg.EvalEvery == 0) {
			if err := t.evaluate(ctx); err != nil {
				if ctx.Err() != nil {
					return t.interrupted(ctx, t.src.Position())
				}
				return err
			}
		}
		if last || (t.cfg.CheckpointEvery > 0 && t.step%t.cfg.CheckpointEvery == 0) {
			if err := t.save(ctx, t.src.Position()); err != nil {
				if ctx.Err() != nil {
					return t.interrupted(ctx, t.src.Position())
				}
				return err
			}
		}
	}
	return nil
}

// update runs one step: Accum micro-batches of loss and gradients, the
// checks, clipping and the optimizer's update, through the stepper.
func (t *Trainer) update(ctx context.Context) (StepMetrics, error) {
	start := time.Now()
	step := t.step + 1
	req := api.TrainStepRequest{
		Optimizer: t.cfg.Optimizer,
		LR:        t.cfg.Optimizer.LR * t.cfg.Schedule.Factor(t.step, t.cfg.Steps),
		ClipNorm:  t.cfg.ClipNorm,
	}
	var tokens int64
	for range t.cfg.Accum {
		if err := ctx.Err(); err != nil {
			return StepMetrics{}, err
		}
		b, err := t.src.Next(ctx)
		if err != nil {
			return StepMetrics{}, fmt.Errorf("step %d: data: %w", step, err)
		}
		req.Batches = append(req.Batches, t.resets().batch(b))
		tokens += countTargets(b)
	}
	t.reduced = tokens
	res, err := t.stepper.TrainStep(ctx, req)
	if err != nil {
		return StepMetrics{}, fmt.Errorf("step %d: %w", step, err)
	}
	if t.reducer != nil {
		tokens = t.reduced
	}
	loss, norm, lr := res.Loss, res.GradNorm, req.LR
	t.step = step
	t.tokens += tokens
	sec := time.Since(start).Seconds()
	t.elapsed += sec
	return StepMetrics{Step: step, Loss: loss, LR: lr, GradNorm: norm, Tokens: t.tokens, TokensPerSec: float64(tokens) / sec, Elapsed: t.elapsed}, nil
}

// interrupted saves the last completed step, with the data position
// before the step that was cut short, and returns the *Interrupted error.
func (t *Trainer) interrupted(ctx context.Context, pos data.Position) error {
	e := &Interrupted{Step: t.step, Err: ctx.Err()}
	if t.Dir == "" {
		return e
	}
	if t.saved != t.step {
		if err := t.save(context.WithoutCancel(ctx), pos); err != nil {
			e.Err = errors.Join(ctx.Err(), err)
			return e
		}
	}
	e.Checkpoint = StepDir(t.Dir, t.step)
	return e
}

// evaluate measures the validation loss and reports it.
func (t *Trainer) evaluate(ctx context.Context) error {
	if t.Eval == nil {
		return nil
	}
	loss, n, err := MeanLoss(ctx, t.model, t.resets().seq(t.Eval()), t.cfg.EvalBatches)
	if err != nil {
		return fmt.Errorf("step %d: validation: %w", t.step, err)
	}
	if t.OnEval != nil {
		t.OnEval(EvalMetrics{Step: t.step, Loss: loss, Tokens: n})
	}
	return nil
}

// docResets sets the document starts of batches: after each separator
// when on.
type docResets struct {
	on  bool
	sep int32
}

// batch returns b with its document starts.
func (d docResets) batch(b api.Batch) api.Batch {
	if d.on {
		b.Starts = data.DocumentStarts(b.Inputs, d.sep)
	}
	return b
}

// seq returns batches with their document starts.
func (d docResets) seq(batches iter.Seq2[api.Batch, error]) iter.Seq2[api.Batch, error] {
	if !d.on {
		return batches
	}
	return WithDocumentStarts(batches, d.sep)
}

// WithDocumentStarts returns batches with the document starts after each
// separator sep set in every batch (data.DocumentStarts): what a run with
// Config.DocResets validates on.
func WithDocumentStarts(batches iter.Seq2[api.Batch, error], sep int32) iter.Seq2[api.Batch, error] {
	d := docResets{true, sep}
	return func(yield func(api.Batch, error) bool) {
		for b, err := range batches {
			if !yield(d.batch(b), err) {
				return
			}
		}
	}
}

// resets returns the run's document resets.
func (t *Trainer) resets() docResets { return docResets{t.cfg.DocResets, t.Separator} }

// countTargets returns the number of targets of b that count in the loss.
func countTargets(b api.Batch) int64 {
	var n int64
	for _, row := range b.Targets {
		for _, y := range row {
			if y != api.IgnoreIndex {
				n++
			}
		}
	}
	return n
}

// globalNorm returns the L2 norm of all gradients together, and the name
// of the first parameter whose gradient is not finite ("" if none).
func globalNorm(grads []api.Parameter) (float64, string) {
	var sum float64
	for _, g := range grads {
		var s float64
		for _, v := range api.ViewFloat32s(g.Value).V {
			s += float64(v) * float64(v)
		}
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return s, g.Name
		}
		sum += s
	}
	return math.Sqrt(sum), ""
}
