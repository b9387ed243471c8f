package cli

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"os"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/train"
)

// tuneStateFlags are the flags of tune-state.
type tuneStateFlags struct {
	lm          lmFlags
	out, from   string
	data, ext   []string
	field       string
	valFraction float64
	prefix      int
	logEvery    int
	cfg         train.Config
}

func newTuneStateCmd() *cobra.Command {
	var o tuneStateFlags
	o.cfg = train.DefaultConfig()
	o.cfg.Steps, o.cfg.SeqLen, o.cfg.EvalEvery, o.cfg.EvalBatches = 200, 128, 50, 20
	o.cfg.Optimizer.LR, o.cfg.Optimizer.WeightDecay = 1e-2, 0
	o.cfg.Schedule.Warmup = 10
	cmd := &cobra.Command{
		Use:   "tune-state --data PATH... --out STATE [--model DIR]",
		Short: "Learn an initial recurrent state that adapts a frozen model to some text (state tuning)",
		Long: `tune-state learns the initial state of a model (by default the built-in
one) on the documents under --data, its weights frozen: the prefix-tuning of
recurrent models. The state is a few thousand numbers per layer; every
sequence of the data starts from it, documents inside a block too (unless
--doc-resets=false). The data are read as train reads them (files, folders,
globs, JSONL, Parquet, Arrow), tokenized with the model's tokenizer into a
temporary folder, a --val-fraction of the documents held out.

It prints the validation loss and perplexity of the model from an empty
state (as it runs without the tuned state) and from the state before and
after tuning, and writes the state to --out, a state file that
densessm generate --state and densessm eval ppl --state start from
(docs/state.md). Ctrl-C stops it and saves the state of the last step.

A RetNet state counts only at a position past 0: the state stands for a
prefix of --prefix tokens, the position its tokens continue from.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTuneState(cmd, &o) },
	}
	f := cmd.Flags()
	o.lm.register(f)
	f.StringVar(&o.out, "out", "", "state file to write")
	f.StringVar(&o.from, "state", "", "start from this state file (default: zeros)")
	f.StringArrayVar(&o.data, "data", nil, "text to tune on: file, folder or glob (repeatable)")
	f.StringSliceVar(&o.ext, "ext", nil, "when walking folders, read only files with these extensions")
	f.StringVar(&o.field, "field", "text", "JSONL field or Parquet/Arrow column of the text")
	f.Float64Var(&o.valFraction, "val-fraction", 0.1, "share of documents held out for validation")
	f.IntVar(&o.prefix, "prefix", 8, "the position the state stands at, in tokens (a state without --state)")
	f.IntVar(&o.cfg.Steps, "steps", o.cfg.Steps, "optimizer updates")
	f.IntVar(&o.cfg.BatchSize, "batch-size", o.cfg.BatchSize, "sequences per micro-batch")
	f.IntVar(&o.cfg.SeqLen, "seq-len", o.cfg.SeqLen, "tokens per sequence")
	f.IntVar(&o.cfg.Accum, "grad-accum", o.cfg.Accum, "micro-batches per update")
	f.Float64Var(&o.cfg.Optimizer.LR, "lr", o.cfg.Optimizer.LR, "peak learning rate (AdamW)")
	f.IntVar(&o.cfg.Schedule.Warmup, "warmup", o.cfg.Schedule.Warmup, "steps of linear warmup, then cosine decay (unless given: at most a tenth of --steps)")
	f.Float64Var(&o.cfg.ClipNorm, "clip", o.cfg.ClipNorm, "clip the gradient's norm to this (0: off)")
	f.Uint64Var(&o.cfg.Seed, "seed", o.cfg.Seed, "seed of the data order")
	f.IntVar(&o.cfg.EvalEvery, "eval-every", o.cfg.EvalEvery, "measure the validation loss every N steps (0: only at the end)")
	f.IntVar(&o.cfg.EvalBatches, "eval-batches", o.cfg.EvalBatches, "validation batches per measurement (0: all)")
	f.BoolVar(&o.cfg.DocResets, "doc-resets", o.cfg.DocResets, "start each document in a block from the state")
	f.IntVar(&o.logEvery, "log-every", 10, "when stderr is not a terminal, print a progress line every N steps")
	cmd.MarkFlagRequired("out")
	cmd.MarkFlagRequired("data")
	return cmd
}

func runTuneState(cmd *cobra.Command, o *tuneStateFlags) error {
	ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
	if o.prefix < 0 || o.logEvery < 1 || !(o.valFraction > 0 && o.valFraction < 1) {
		return fmt.Errorf("--prefix %d, --log-every %d, --val-fraction %g: want prefix >= 0, log-every >= 1, 0 < val-fraction < 1: %w", o.prefix, o.logEvery, o.valFraction, api.ErrConfig)
	}
	if !cmd.Flags().Changed("warmup") {
		o.cfg.Schedule.Warmup = min(o.cfg.Schedule.Warmup, o.cfg.Steps/10)
	}
	if err := o.cfg.Validate(); err != nil {
		return err
	}
	if err := atomicfile.Check(o.out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	m, tok, err := o.lm.open(cmd, o.cfg.BatchSize*o.cfg.SeqLen)
	if err != nil {
		return err
	}
	defer m.Close()
	tuner, ok := m.(api.StateTuner)
	if !ok || !m.Info().Snapshots {
		return fmt.Errorf("%s models do not learn an initial state in this process: %w", m.Info().Arch, api.ErrUnsupported)
	}
	if w := m.Info().Weights; w != api.F32 && w != api.Invalid {
		return fmt.Errorf("--weights %s: tuning a state needs F32 weights (its gradient runs back through them): %w", api.WeightName(w), api.ErrUnsupported)
	}
	st := stateFlags{load: o.from, saveTo: o.out}
	init, err := st.open(ctx, m)
	if err != nil {
		return err
	}
	defer init.Close()
	if o.from == "" {
		if err := zeroStateAt(ctx, m, init, o.prefix); err != nil {
			return err
		}
	}

	corpus, err := data.Open(o.data, data.SourceOptions{Field: o.field, Exts: o.ext})
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	dir, err := os.MkdirTemp("", "densessm-tune-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sep := int32(tok.Special().EOS)
	bar := newProgress(cmd, corpus.Bytes(), "tokenizing", true)
	_, err = data.Build(ctx, corpus, dir, data.BuildOptions{Tokenizer: tok, Separator: sep, ValFraction: o.valFraction, Progress: func(done, _ int64) { bar.set(done) }})
	bar.done()
	if err != nil {
		return err
	}
	trainTokens, valTokens, err := openTokenFiles(dir)
	if err != nil {
		return err
	}
	defer trainTokens.Close()
	defer valTokens.Close()
	cfg := o.cfg
	loader, err := data.NewLoader(trainTokens, cfg.SeqLen, cfg.BatchSize, cfg.Seed)
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	if valTokens.Len() <= int64(cfg.SeqLen) {
		return fmt.Errorf("--data: %d validation tokens, fewer than one sequence of --seq-len %d: give more text or a larger --val-fraction: %w", valTokens.Len(), cfg.SeqLen, api.ErrConfig)
	}
	resets := func(batches iter.Seq2[api.Batch, error]) iter.Seq2[api.Batch, error] {
		if !cfg.DocResets {
			return batches
		}
		return train.WithDocumentStarts(batches, sep)
	}
	eval := func() iter.Seq2[api.Batch, error] {
		return data.Batches(valTokens, cfg.SeqLen, cfg.BatchSize, cfg.EvalBatches)
	}
	empty, _, err := train.MeanLoss(ctx, m, resets(eval()), cfg.EvalBatches)
	if err != nil {
		return fmt.Errorf("validation: %w", err)
	}
	start, _, err := train.StateMeanLoss(ctx, tuner, init, resets(eval()), cfg.EvalBatches)
	if err != nil && errors.Is(err, api.ErrConfig) {
		return fmt.Errorf("the starting state (--prefix %d, --state %q): %w", o.prefix, o.from, err)
	}
	if err != nil {
		return fmt.Errorf("validation: %w", err)
	}
	fmt.Fprintf(stderr, "tuning the initial state of %s (%d numbers) for %d steps of %d×%d×%d tokens\n",
		m.Info().Arch, stateSize(ctx, m, init), cfg.Steps, cfg.Accum, cfg.BatchSize, cfg.SeqLen)
	fmt.Fprintf(stderr, "validation loss from an empty state %.4f (perplexity %.2f), from the initial state %.4f (%.2f)\n", empty, math.Exp(empty), start, math.Exp(start))

	rep := newTrainReporter(cmd, cfg.Steps, 0, o.logEvery)
	var last float64
	tuning := &train.StateTuning{Model: tuner, Config: cfg, Src: loader, Separator: sep, Eval: eval,
		OnStep: func(s train.StepMetrics) {
			rep.step(s)
			emitEvent(ctx, Event{Kind: EventStep, Step: &s})
		},
		OnEval: func(e train.EvalMetrics) {
			last = e.Loss
			rep.eval(e)
			emitEvent(ctx, Event{Kind: EventEval, Eval: &e})
		},
	}
	extendInterruptGrace(ctx, saveGrace)
	err = tuning.Run(ctx, init)
	rep.done()
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		if serr := st.save(context.WithoutCancel(ctx), m, init); serr != nil {
			return errors.Join(err, serr)
		}
		fmt.Fprintf(stderr, "stopped; the state of the last step is saved in %s\n", o.out)
		return err
	}
	if err != nil {
		return err
	}
	if err := st.save(ctx, m, init); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "validation loss from the tuned state %.4f (perplexity %.2f; from an empty state %.2f); saved in %s\n", last, math.Exp(last), math.Exp(empty), o.out)
	return nil
}

// zeroStateAt sets s, a one-sequence state of m, to zeros at position pos.
func zeroStateAt(ctx context.Context, m api.Model, s api.State, pos int) error {
	sv := m.(api.StateSaver)
	snap, err := sv.SaveState(ctx, s)
	if err != nil {
		return err
	}
	for _, t := range snap.Tensors {
		clear(t.Data)
	}
	snap.Tokens = pos
	return sv.LoadState(ctx, s, snap)
}

// stateSize returns the number of values of s, a state of m.
func stateSize(ctx context.Context, m api.Model, s api.State) int {
	snap, err := m.(api.StateSaver).SaveState(ctx, s)
	if err != nil {
		return 0
	}
	n := 0
	for _, t := range snap.Tensors {
		n += t.Shape.NumElements()
	}
	return n
}
