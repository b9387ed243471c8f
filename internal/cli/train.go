package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/internal/readcap"
	"github.com/densessm/densessm/internal/sysmem"
	"github.com/densessm/densessm/tokenizer"
	"github.com/densessm/densessm/train"
)

// Files of a training run's directory besides the model and checkpoints.
const (
	runFile       = "train.json"    // the run's settings, for --resume
	metricsFile   = "metrics.jsonl" // one JSON record per step and validation
	lossPlotFile  = "loss.png"
	tokenizerFile = "tokenizer.json"
	dataDir       = "data" // the tokenized corpus
)

// runSettings is what a run directory records of how it was started, so
// that --resume needs nothing but --out.
type runSettings struct {
	Arch        string          `json:"arch"`
	Model       json.RawMessage `json:"model_config"`
	Data        []string        `json:"data"`
	Field       string          `json:"field"`
	Ext         []string        `json:"ext,omitempty"`
	ValFraction float64         `json:"val_fraction"`
	Trainer     train.Config    `json:"trainer"`
}

// trainFlags are the flags of densessm train.
type trainFlags struct {
	arch, configFile, modelConfig, out, tokenizerPath, field string
	data, ext                                                []string
	vocabSize, threads, logEvery                             int
	valFraction                                              float64
	resume                                                   bool
	cfg                                                      train.Config
}

func newTrainCmd() *cobra.Command {
	var o trainFlags
	o.cfg = train.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "train --arch ARCH [--data PATH...] --out DIR [--resume]",
		Short: "Train a model on text (default: the Go source tree) with checkpoints that resume exactly",
		Long: `train trains a model of a registered architecture from scratch on the
documents under --data: text files, folders (walked; --ext keeps only some
extensions), globs (** for any depth), JSONL, Parquet and Arrow files (the
text in --field). Without --data it reads the .go files of the Go source
tree, $(go env GOROOT)/src.

Without --tokenizer, a byte-level BPE tokenizer of --vocab-size tokens is
trained on the same documents first. The corpus is tokenized once into
DIR/data and read from disk in shuffled blocks of --seq-len tokens, a
--val-fraction of the documents held out for validation. Each document ends
with the tokenizer's end-of-text token; a block that holds the end of one
document and the start of the next resets the model's state there (unless
--doc-resets=false), so no token is predicted from another document.

DIR receives config.json, model.safetensors and tokenizer.json (a model
directory: densessm generate --model DIR), checkpoints/step-N (model,
optimizer and data position, the newest --keep of them), metrics.jsonl (one
record per step and per validation) and loss.png, redrawn at every
checkpoint. Ctrl-C saves a checkpoint of the last completed step; --resume
continues the run in DIR exactly as if it had never stopped (only --steps
and --threads may change).

--config FILE (YAML or JSON) sets any of these flags by name (the command
line wins), and the model's config.json fields under the key "model".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTrain(cmd, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.arch, "arch", "densemamba", "architecture (see: densessm archs)")
	f.StringVar(&o.configFile, "config", "", "YAML or JSON file of flag values, and the model's config under \"model\"")
	f.StringVar(&o.modelConfig, "model-config", "", "config.json of the model's shape (default: the architecture's small default); vocab_size follows the tokenizer")
	f.StringVar(&o.out, "out", "", "run directory: model, checkpoints, metrics")
	f.BoolVar(&o.resume, "resume", false, "continue the run in --out from its newest checkpoint")
	f.StringArrayVar(&o.data, "data", nil, "training text: file, folder or glob (repeatable; default: the Go source tree)")
	f.StringVar(&o.field, "field", "text", "JSONL field or Parquet/Arrow column of the text")
	f.StringSliceVar(&o.ext, "ext", nil, "when walking folders, read only files with these extensions (default: every text file; .go for the Go source tree)")
	f.Float64Var(&o.valFraction, "val-fraction", 0.01, "share of documents held out for validation")
	f.StringVar(&o.tokenizerPath, "tokenizer", "", "tokenizer.json to use (default: train one on the data)")
	f.IntVar(&o.vocabSize, "vocab-size", 8192, "vocabulary of the tokenizer trained when --tokenizer is not given")
	f.IntVar(&o.cfg.Steps, "steps", o.cfg.Steps, "optimizer updates in the whole run")
	f.IntVar(&o.cfg.BatchSize, "batch-size", o.cfg.BatchSize, "sequences per micro-batch")
	f.IntVar(&o.cfg.SeqLen, "seq-len", o.cfg.SeqLen, "tokens per sequence")
	f.IntVar(&o.cfg.Accum, "grad-accum", o.cfg.Accum, "micro-batches per update (gradient accumulation)")
	f.StringVar(&o.cfg.Optimizer.Name, "optimizer", o.cfg.Optimizer.Name, "adamw or sgd")
	f.Float64Var(&o.cfg.Optimizer.LR, "lr", o.cfg.Optimizer.LR, "peak learning rate")
	f.Float64Var(&o.cfg.Optimizer.WeightDecay, "weight-decay", o.cfg.Optimizer.WeightDecay, "weight decay (not on norms, biases, embeddings unless --decay-all)")
	f.BoolVar(&o.cfg.Optimizer.DecayAll, "decay-all", false, "apply weight decay to every parameter")
	f.Float64Var(&o.cfg.Optimizer.Beta1, "beta1", o.cfg.Optimizer.Beta1, "AdamW's first-moment decay")
	f.Float64Var(&o.cfg.Optimizer.Beta2, "beta2", o.cfg.Optimizer.Beta2, "AdamW's second-moment decay")
	f.Float64Var(&o.cfg.Optimizer.Eps, "eps", o.cfg.Optimizer.Eps, "AdamW's denominator term")
	f.Float64Var(&o.cfg.Optimizer.Momentum, "momentum", 0.9, "SGD momentum (0: none)")
	f.BoolVar(&o.cfg.Optimizer.Nesterov, "nesterov", false, "SGD with Nesterov momentum")
	f.StringVar(&o.cfg.Schedule.Kind, "schedule", o.cfg.Schedule.Kind, "learning-rate schedule after warmup: constant, cosine or linear")
	f.IntVar(&o.cfg.Schedule.Warmup, "warmup", o.cfg.Schedule.Warmup, "steps of linear warmup (unless given: at most a tenth of --steps)")
	f.Float64Var(&o.cfg.Schedule.MinRatio, "min-lr-ratio", o.cfg.Schedule.MinRatio, "final learning rate as a share of --lr (cosine, linear)")
	f.Float64Var(&o.cfg.ClipNorm, "clip", o.cfg.ClipNorm, "clip the gradients' global norm to this (0: off)")
	f.Uint64Var(&o.cfg.Seed, "seed", o.cfg.Seed, "seed of the initial weights and the data order")
	f.IntVar(&o.cfg.CheckpointEvery, "checkpoint-every", o.cfg.CheckpointEvery, "save a checkpoint every N steps (0: only at the end)")
	f.IntVar(&o.cfg.EvalEvery, "eval-every", o.cfg.EvalEvery, "measure the validation loss every N steps (0: only at the end)")
	f.IntVar(&o.cfg.EvalBatches, "eval-batches", o.cfg.EvalBatches, "validation batches per measurement (0: all)")
	f.IntVar(&o.cfg.Keep, "keep", o.cfg.Keep, "checkpoints to keep on disk")
	f.BoolVar(&o.cfg.DocResets, "doc-resets", o.cfg.DocResets, "start each document in a block from an empty state (by default where the model takes packed batches; given, required)")
	f.IntVar(&o.threads, "threads", 0, "backend threads (0: every core)")
	backendFlag(f)
	f.IntVar(&o.logEvery, "log-every", 10, "when stderr is not a terminal, print a progress line every N steps")
	cmd.MarkFlagRequired("out")
	return cmd
}

func runTrain(cmd *cobra.Command, o *trainFlags) (err error) {
	// dp is nil but in densessm-mpi, where this process is one rank of a
	// data-parallel run (dataparallel.go).
	dp := dataParallelOf(cmd.Context())
	defer dp.begin(cmd, &err)()
	ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
	var modelObject []byte
	if o.configFile != "" {
		var err error
		if modelObject, err = applyConfigFile(cmd, o.configFile, "model"); err != nil {
			return err
		}
	}
	if o.cfg.Optimizer.Name == train.AdamW {
		o.cfg.Optimizer.Momentum = 0
	}
	if !cmd.Flags().Changed("warmup") {
		o.cfg.Schedule.Warmup = min(o.cfg.Schedule.Warmup, o.cfg.Steps/10)
	}
	if err := checkOutDir(o.out); err != nil {
		return err
	}
	if o.threads < 0 || o.logEvery < 1 || !(o.valFraction >= 0 && o.valFraction < 1) {
		return fmt.Errorf("--threads %d, --log-every %d, --val-fraction %g: want threads >= 0, log-every >= 1, 0 <= val-fraction < 1: %w", o.threads, o.logEvery, o.valFraction, api.ErrConfig)
	}
	run, tok, tokRaw, err := dp.prepareRun(cmd, o, modelObject)
	if err != nil {
		return err
	}
	a, err := architecture(cmd, run.Arch)
	if err != nil {
		return fmt.Errorf("--arch: %w", err)
	}
	modelCfg, err := a.ParseConfig(run.Model)
	if err != nil {
		return fmt.Errorf("model config: %w", err)
	}
	if err := checkTrainMemory(cmd, modelCfg, run.Trainer); err != nil {
		return err
	}
	if !o.resume && !dp.follows() {
		if err := saveRun(o.out, run, tokRaw); err != nil {
			return err
		}
	}

	trainTokens, valTokens, err := dp.tokenizedCorpus(cmd, o.out, run, tok, tokRaw)
	if err != nil {
		return err
	}
	defer trainTokens.Close()
	defer valTokens.Close()
	cfg := run.Trainer
	loader, err := data.NewLoader(trainTokens, cfg.SeqLen, cfg.BatchSize, cfg.Seed)
	if err != nil {
		return fmt.Errorf("training data: %w", err)
	}
	src, err := dp.source(loader, cfg)
	if err != nil {
		return err
	}

	m, resumeFrom, err := trainModel(cmd, o, run, a, modelCfg)
	if err != nil {
		return err
	}
	defer m.Close()
	if cfg.DocResets && !m.Info().Packed && !cmd.Flags().Changed("doc-resets") {
		// The default, for a model that cannot reset at documents.
		cfg.DocResets = false
		fmt.Fprintf(stderr, "note: %s models do not take packed batches: training across documents (--doc-resets=false)\n", run.Arch)
	}
	tr, err := train.New(m, cfg, src)
	if err != nil {
		return err
	}
	tr.Dir = o.out
	tr.Files = map[string][]byte{tokenizerFile: tokRaw}
	tr.Separator = int32(tok.Special().EOS)
	if valTokens.Len() > int64(cfg.SeqLen) {
		tr.Eval = func() iter.Seq2[api.Batch, error] {
			return data.Batches(valTokens, cfg.SeqLen, cfg.BatchSize, cfg.EvalBatches)
		}
	} else {
		fmt.Fprintf(stderr, "note: %d validation tokens, fewer than one sequence: no validation loss\n", valTokens.Len())
	}
	if resumeFrom != "" {
		if err := tr.Restore(resumeFrom); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
	}
	if done, err := dp.join(ctx, tr, m, stderr); done || err != nil {
		return err
	}
	metrics, err := openMetrics(o.out, tr.Step())
	if err != nil {
		return err
	}
	defer metrics.Close()

	params := int64(0)
	for _, p := range m.Params() {
		params += int64(p.Shape.NumElements())
	}
	fmt.Fprintf(stderr, "training %s (%d parameters) for %d steps of %d×%d×%d tokens on %d threads, from step %d\n",
		run.Arch, params, cfg.Steps, cfg.Accum, cfg.BatchSize, cfg.SeqLen, m.Info().Threads, tr.Step())
	rep := newTrainReporter(cmd, cfg.Steps, tr.Step(), o.logEvery)
	tr.OnStep = func(s train.StepMetrics) {
		metrics.write(s)
		rep.step(s)
		dp.step(s)
		emitEvent(ctx, Event{Kind: EventStep, Step: &s})
	}
	tr.OnEval = func(e train.EvalMetrics) {
		metrics.write(e)
		rep.eval(e)
		emitEvent(ctx, Event{Kind: EventEval, Eval: &e})
	}
	tr.OnCheckpoint = func(step int, dir string) {
		metrics.flush()
		if err := plotLoss(filepath.Join(o.out, metricsFile), filepath.Join(o.out, lossPlotFile)); err != nil {
			rep.printf("note: loss plot not drawn: %v", err)
		}
		emitEvent(ctx, Event{Kind: EventCheckpoint, Checkpoint: &CheckpointSaved{Step: step, Dir: dir}})
	}
	extendInterruptGrace(ctx, saveGrace)
	err = tr.Run(ctx)
	rep.done()
	var intr *train.Interrupted
	if errors.As(err, &intr) {
		if intr.Checkpoint != "" {
			fmt.Fprintf(stderr, "stopped after step %d; checkpoint saved in %s\nresume with: densessm train --resume --out %s\n", intr.Step, intr.Checkpoint, o.out)
		} else {
			fmt.Fprintf(stderr, "stopped after step %d; %v\n", intr.Step, intr.Err)
		}
		return err
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "done: %d steps; model in %s\n", tr.Step(), o.out)
	return dp.finish(ctx, tr, stderr)
}

// tokenizedCorpus returns the run's training and validation token files,
// tokenizing the corpus into DIR/data first unless it is there already.
func tokenizedCorpus(cmd *cobra.Command, dir string, run runSettings, tok *tokenizer.Tokenizer, tokRaw []byte) (trainTokens, valTokens *data.Tokens, err error) {
	corpus, err := data.Open(run.Data, data.SourceOptions{Field: run.Field, Exts: run.Ext})
	if err != nil {
		return nil, nil, fmt.Errorf("--data: %w", err)
	}
	sum := sha256.Sum256(tokRaw)
	bo := data.BuildOptions{Tokenizer: tok, TokenizerHash: hex.EncodeToString(sum[:]), Separator: int32(tok.Special().EOS), ValFraction: run.ValFraction}
	dd := filepath.Join(dir, dataDir)
	if _, ok := data.UpToDate(dd, corpus, bo); !ok {
		bar := newProgress(cmd, corpus.Bytes(), "tokenizing", true)
		bo.Progress = func(done, _ int64) { bar.set(done) }
		start := time.Now()
		stats, err := data.Build(cmd.Context(), corpus, dd, bo)
		bar.done()
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "tokenized %d documents (%s) into %d training and %d validation tokens in %.1fs\n",
			stats.Documents, sysmem.Format(stats.Bytes), stats.TrainTokens, stats.ValTokens, time.Since(start).Seconds())
	}
	return openTokenFiles(dd)
}

// openTokenFiles opens the training and validation token files data.Build
// wrote into dir.
func openTokenFiles(dir string) (trainTokens, valTokens *data.Tokens, err error) {
	if trainTokens, err = data.OpenTokens(filepath.Join(dir, data.TrainFile)); err != nil {
		return nil, nil, err
	}
	if valTokens, err = data.OpenTokens(filepath.Join(dir, data.ValFile)); err != nil {
		trainTokens.Close()
		return nil, nil, err
	}
	return trainTokens, valTokens, nil
}

// trainModel returns the model to train: the newest checkpoint's with
// --resume (and its directory), else a fresh one.
func trainModel(cmd *cobra.Command, o *trainFlags, run runSettings, a api.Architecture, cfg api.Config) (api.Model, string, error) {
	build, err := buildOptions(cmd, o.threads)
	if err != nil {
		return nil, "", err
	}
	var m api.Model
	path := ""
	if o.resume {
		var ok bool
		if path, _, ok, err = train.Latest(o.out); err != nil {
			return nil, "", err
		} else if !ok {
			return nil, "", fmt.Errorf("--resume: %s has no checkpoint yet: %w", o.out, api.ErrNotFound)
		}
		if m, err = checkpoint.LoadModel(cmd.Context(), path, checkpoint.LoadOptions{Build: build, Arch: run.Arch}); err != nil {
			return nil, "", fmt.Errorf("--resume: %w", err)
		}
	} else {
		spin := newSpinner(cmd, "initialising")
		build.Seed = int64(run.Trainer.Seed)
		m, err = a.New(cmd.Context(), cfg, build)
		spin.done()
		if err != nil {
			return nil, "", err
		}
	}
	if !m.Info().Trainable {
		m.Close()
		return nil, "", fmt.Errorf("--arch %s: the model does not train: %w", run.Arch, api.ErrUnsupported)
	}
	return m, path, nil
}

// saveGrace is how long an interrupted train may take to save its
// checkpoint before the process stops anyway.
const saveGrace = 5 * time.Minute

// prepareRun returns the run's settings, its tokenizer and the tokenizer's
// file contents: from DIR with --resume, else from the flags (training a
// tokenizer when none is given). It writes nothing.
func prepareRun(cmd *cobra.Command, o *trainFlags, modelObject []byte) (runSettings, *tokenizer.Tokenizer, []byte, error) {
	runPath := filepath.Join(o.out, runFile)
	if o.resume {
		return resumeRun(cmd, o, runPath)
	}
	if _, err := os.Stat(runPath); err == nil {
		return runSettings{}, nil, nil, fmt.Errorf("--out %s holds a training run already: add --resume to continue it, or choose another --out: %w", o.out, api.ErrConfig)
	}
	if err := o.cfg.Validate(); err != nil {
		return runSettings{}, nil, nil, err
	}
	run := runSettings{Arch: o.arch, Data: o.data, Field: o.field, Ext: o.ext, ValFraction: o.valFraction, Trainer: o.cfg}
	if len(run.Data) == 0 {
		root, err := goroot()
		if err != nil {
			return runSettings{}, nil, nil, err
		}
		run.Data = []string{filepath.Join(root, "src")}
		if len(run.Ext) == 0 {
			run.Ext = []string{".go"}
		}
	}
	a, err := architecture(cmd, run.Arch)
	if err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("--arch: %w", err)
	}
	if o.modelConfig != "" && modelObject != nil {
		return runSettings{}, nil, nil, fmt.Errorf("--model-config and the \"model\" key of --config both give the model: %w", api.ErrConfig)
	}
	modelJSON := modelObject
	if o.modelConfig != "" {
		if modelJSON, err = readcap.File(o.modelConfig, maxConfigFile); err != nil {
			return runSettings{}, nil, nil, fmt.Errorf("--model-config: %w", err)
		}
	}
	if modelJSON == nil { // the architecture's default, its vocabulary the tokenizer's
		if modelJSON, err = json.Marshal(a.DefaultConfig()); err != nil {
			return runSettings{}, nil, nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(modelJSON, &m); err != nil {
			return runSettings{}, nil, nil, err
		}
		delete(m, "vocab_size")
		if modelJSON, err = json.Marshal(m); err != nil {
			return runSettings{}, nil, nil, err
		}
	}
	// Check the model's config and the data before the tokenizer is trained.
	if _, err := a.ParseConfig(modelJSON); err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("model config: %w", err)
	}
	corpus, err := data.Open(run.Data, data.SourceOptions{Field: run.Field, Exts: run.Ext})
	if err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("--data: %w", err)
	}
	var tokRaw []byte
	if o.tokenizerPath != "" {
		if tokRaw, err = readcap.File(o.tokenizerPath, 256<<20); err != nil {
			return runSettings{}, nil, nil, fmt.Errorf("--tokenizer: %w", err)
		}
	} else if tokRaw, err = trainTokenizer(cmd, corpus, o.vocabSize); err != nil {
		return runSettings{}, nil, nil, err
	}
	tok, err := parseTokenizer(tokRaw, o.tokenizerPath)
	if err != nil {
		return runSettings{}, nil, nil, err
	}
	if run.Model, err = withVocab(modelJSON, tok.VocabSize()); err != nil {
		return runSettings{}, nil, nil, err
	}
	return run, tok, tokRaw, nil
}

// saveRun writes a new run's settings and tokenizer into its directory,
// which it creates.
func saveRun(dir string, run runSettings, tokRaw []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, tokenizerFile), tokRaw); err != nil {
		return err
	}
	js, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, runFile), append(js, '\n'))
}

// resumeRun reads the settings and tokenizer of the run in --out, with
// --steps changed when given.
func resumeRun(cmd *cobra.Command, o *trainFlags, runPath string) (runSettings, *tokenizer.Tokenizer, []byte, error) {
	changeable := map[string]bool{"resume": true, "out": true, "steps": true, "threads": true, "log-every": true, "max-memory": true}
	var fixed string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if !changeable[f.Name] && fixed == "" {
			fixed = f.Name
		}
	})
	if fixed != "" {
		return runSettings{}, nil, nil, fmt.Errorf("--resume continues the run as it was started: --%s cannot change (only --steps and --threads can): %w", fixed, api.ErrConfig)
	}
	raw, err := readcap.File(runPath, maxConfigFile)
	if err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("--resume: %s has no training run: %w", o.out, err)
	}
	var run runSettings
	if err := json.Unmarshal(raw, &run); err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("--resume: %s: %v: %w", runPath, err, api.ErrCorrupt)
	}
	if cmd.Flags().Changed("steps") {
		run.Trainer.Steps = o.cfg.Steps
	}
	if err := run.Trainer.Validate(); err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("--resume: %w", err)
	}
	tokRaw, err := readcap.File(filepath.Join(o.out, tokenizerFile), 256<<20)
	if err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("--resume: %w", err)
	}
	tok, err := parseTokenizer(tokRaw, filepath.Join(o.out, tokenizerFile))
	if err != nil {
		return runSettings{}, nil, nil, err
	}
	return run, tok, tokRaw, nil
}

// parseTokenizer builds a tokenizer from a tokenizer.json's contents;
// name says where they came from.
func parseTokenizer(raw []byte, name string) (*tokenizer.Tokenizer, error) {
	tok, err := tokenizer.FromJSON(raw)
	if err != nil {
		if name == "" {
			name = "the trained tokenizer"
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return tok, nil
}

// withVocab sets a model config's vocab_size to the tokenizer's when it has
// none or a smaller one.
func withVocab(modelJSON []byte, vocab int) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(modelJSON, &m); err != nil {
		return nil, fmt.Errorf("model config: %v: %w", err, api.ErrConfig)
	}
	if v, ok := m["vocab_size"].(float64); !ok || int(v) < vocab {
		m["vocab_size"] = vocab
	}
	return json.Marshal(m)
}

// trainTokenizer trains a byte-level BPE tokenizer of vocab tokens on the
// corpus, with <|endoftext|> as its only special token (the document
// separator), and returns its tokenizer.json.
func trainTokenizer(cmd *cobra.Command, c *data.Corpus, vocab int) ([]byte, error) {
	ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
	var bar *progress
	tr, err := tokenizer.NewTrainer(tokenizer.TrainConfig{
		VocabSize: vocab, MinFrequency: 2, SpecialTokens: []string{"<|endoftext|>"},
		Progress: func(done, total int) {
			if bar == nil {
				bar = newProgress(cmd, int64(total), "tokenizer merges", false)
			}
			bar.set(int64(done))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("--vocab-size: %w", err)
	}
	start := time.Now()
	read := newProgress(cmd, c.Bytes(), "reading corpus", true)
	var batch []string
	size := 0
	err = c.DocumentsProgress(ctx, func(doc string) error {
		batch, size = append(batch, doc), size+len(doc)
		if size < feedBatch {
			return nil
		}
		err := tr.FeedContext(ctx, batch)
		batch, size = batch[:0], 0
		return err
	}, read.set)
	read.done()
	if err == nil {
		err = tr.FeedContext(ctx, batch)
	}
	if err != nil {
		return nil, fmt.Errorf("train tokenizer: %w", err)
	}
	raw, err := tr.TrainContext(ctx)
	bar.done()
	if err != nil {
		return nil, fmt.Errorf("train tokenizer: %w", err)
	}
	fmt.Fprintf(stderr, "trained a %d-token tokenizer in %.1fs\n", vocab, time.Since(start).Seconds())
	return raw, nil
}

// checkTrainMemory refuses a run whose model, optimizer state and step
// would not fit in memory.
func checkTrainMemory(cmd *cobra.Command, cfg api.Config, t train.Config) error {
	est, ok := api.EstimateMemory(cfg)
	if !ok {
		return nil
	}
	copies := 2 // AdamW's two moments
	if t.Optimizer.Name == train.SGD {
		copies = 0
		if t.Optimizer.Momentum > 0 {
			copies = 1
		}
	}
	what := fmt.Sprintf("training a %s model of %d parameters on batches of %d×%d tokens", cfg.ArchName(), est.Parameters, t.BatchSize, t.SeqLen)
	return checkMemory(cmd, est.TrainingBytes(t.BatchSize, t.SeqLen, copies), what)
}
