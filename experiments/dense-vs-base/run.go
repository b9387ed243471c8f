package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/internal/atomicfile"
	"github.com/densessm/densessm/tokenizer"
)

// spec is one training run: a row at a size with a seed.
type spec struct {
	Size, Row string
	Seed      uint64
}

// ID names the run and its directory under OUT/runs.
func (s spec) ID() string { return fmt.Sprintf("%s/%s/seed%d", s.Size, s.Row, s.Seed) }

// result is what one run measured; OUT/runs/ID/result.json holds it, and
// a run with one is not redone.
type result struct {
	ID   string `json:"id"`
	Size string `json:"size"`
	Row  string `json:"row"`
	Seed uint64 `json:"seed"`
	// Commands are the densessm commands that made it, as run from the
	// repository root.
	Commands []string `json:"commands"`
	// Steps and Tokens are the optimizer updates and the tokens trained on.
	Steps  int   `json:"steps"`
	Tokens int64 `json:"tokens"`
	// TrainSeconds is the wall time of the training command (of its last
	// part, for a run that was resumed), which ran beside the other --jobs;
	// TrainPeakRSS its peak resident memory.
	TrainSeconds float64 `json:"train_seconds"`
	TrainPeakRSS int64   `json:"train_peak_rss"`
	// FinalTrainLoss is the mean training loss over the last tenth of the
	// steps; ValLoss the trainer's last validation loss.
	FinalTrainLoss float64 `json:"final_train_loss"`
	ValLoss        float64 `json:"val_loss"`
	// HeldOut is `densessm eval ppl` over the whole held-out split.
	HeldOut pplResult `json:"held_out"`
	// MC is `densessm eval mc` on the experiment's task.
	MC mcResult `json:"mc"`
}

// pplResult is the JSON of `densessm eval ppl --json`.
type pplResult struct {
	Tokens     int     `json:"tokens"`
	NLL        float64 `json:"nll"`
	Perplexity float64 `json:"perplexity"`
}

// mcResult is the JSON of `densessm eval mc --json`.
type mcResult struct {
	Acc      float64 `json:"acc"`
	AccNorm  float64 `json:"acc_norm"`
	Examples int     `json:"examples"`
}

// metric is one record of a run's metrics.jsonl.
type metric struct {
	Step    int      `json:"step"`
	Loss    *float64 `json:"loss"`
	ValLoss *float64 `json:"val_loss"`
	Tokens  int64    `json:"tokens"`
}

// runner runs the experiment's commands.
type runner struct {
	exp     *experiment
	root    string // repository root: every command runs there
	out     string
	bin     string // the densessm executable
	data    []string
	shapes  map[string]shape
	dataDir string // the tokenized corpus every run links to
	log     io.Writer
}

// runDir is the run's directory.
func (r *runner) runDir(s spec) string {
	return filepath.Join(r.out, "runs", filepath.FromSlash(s.ID()))
}

// trainConfig is the --config file of the run's `densessm train`: the
// experiment's training flags, the data, the tokenizer, the architecture,
// the seed and the model's config.json.
func (r *runner) trainConfig(s spec) map[string]any {
	c := maps.Clone(r.exp.Train)
	if c == nil {
		c = map[string]any{}
	}
	c["arch"] = r.exp.row(s.Row).Arch
	c["model"] = r.shapes[runKey(s.Size, s.Row)].Model
	c["seed"] = s.Seed
	c["tokenizer"] = r.exp.Tokenizer
	if len(r.data) > 0 {
		c["data"] = r.data
	}
	if len(r.exp.Ext) > 0 {
		c["ext"] = r.exp.Ext
	}
	return c
}

// run trains and evaluates one run unless its result is there already.
func (r *runner) run(ctx context.Context, s spec) (res result, done bool, err error) {
	dir := r.runDir(s)
	resPath := filepath.Join(dir, "result.json")
	if res, ok, err := r.finished(s); ok || err != nil {
		return res, ok, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, false, err
	}
	cfgPath := filepath.Join(dir, "experiment-train.json")
	if err := writeOrCompare(cfgPath, r.trainConfig(s)); err != nil {
		return res, false, err
	}
	res = result{ID: s.ID(), Size: s.Size, Row: s.Row, Seed: s.Seed}
	threads := strconv.Itoa(r.exp.Threads)
	trainArgs := []string{"train", "--config", r.rel(cfgPath), "--out", r.rel(dir), "--threads", threads}
	res.Commands = append(res.Commands, commandLine(trainArgs))
	if _, err := os.Stat(filepath.Join(dir, "train.json")); err == nil {
		trainArgs = []string{"train", "--resume", "--out", r.rel(dir), "--threads", threads}
	} else if err := r.linkData(filepath.Join(dir, "data")); err != nil {
		return res, false, err
	}
	start := time.Now()
	rss, err := r.densessm(ctx, filepath.Join(dir, "train.log"), nil, trainArgs...)
	if err != nil {
		return res, false, err
	}
	res.TrainSeconds, res.TrainPeakRSS = time.Since(start).Seconds(), rss
	if err := readMetrics(filepath.Join(dir, "metrics.jsonl"), &res); err != nil {
		return res, false, err
	}
	ctxLen := strconv.Itoa(r.exp.EvalContext)
	ppl := []string{"eval", "ppl", "--model", r.rel(dir), "--tokens", r.rel(filepath.Join(dir, "data", data.ValFile)),
		"--mode", "parallel", "--context", ctxLen, "--stride", ctxLen, "--json", "--threads", threads}
	if _, err := r.densessm(ctx, filepath.Join(dir, "eval-ppl.log"), &res.HeldOut, ppl...); err != nil {
		return res, false, err
	}
	mc := []string{"eval", "mc", "--model", r.rel(dir), "--task", r.exp.Task, "--json", "--threads", threads}
	if _, err := r.densessm(ctx, filepath.Join(dir, "eval-mc.log"), &res.MC, mc...); err != nil {
		return res, false, err
	}
	res.Commands = append(res.Commands, commandLine(ppl), commandLine(mc))
	return res, false, writeJSON(resPath, res)
}

// finished returns the result of a run done before, if there is one and
// it was made with the settings the experiment asks for now.
func (r *runner) finished(s spec) (res result, ok bool, err error) {
	path := filepath.Join(r.runDir(s), "result.json")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return res, false, nil
	} else if err != nil {
		return res, false, err
	}
	if err := writeOrCompare(filepath.Join(r.runDir(s), "experiment-train.json"), r.trainConfig(s)); err != nil {
		return res, false, err
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return res, false, fmt.Errorf("%s: %w (delete it to redo the run)", path, err)
	}
	return res, true, nil
}

// readMetrics reads the losses of a finished run into res.
func readMetrics(path string, res *result) error {
	ms, err := readMetricsFile(path)
	if err != nil {
		return err
	}
	var losses []float64
	for _, m := range ms {
		if m.Loss != nil {
			losses = append(losses, *m.Loss)
			res.Steps, res.Tokens = m.Step, m.Tokens
		}
		if m.ValLoss != nil {
			res.ValLoss = *m.ValLoss
		}
	}
	if len(losses) == 0 {
		return fmt.Errorf("%s: no training steps", path)
	}
	tail := losses[len(losses)-max(1, len(losses)/10):]
	res.FinalTrainLoss = mean(tail)
	return nil
}

// readMetricsFile reads a metrics.jsonl.
func readMetricsFile(path string) ([]metric, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []metric
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m metric
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ms = append(ms, m)
	}
	return ms, sc.Err()
}

// prepareData tokenizes the corpus once into OUT/data, as densessm train
// would into each run's directory, so that every run links to the same
// files instead of tokenizing and storing the corpus again. The options
// are train's: a run whose data did not match would tokenize anew (and say
// so in its train.log), which costs time, not correctness.
func (r *runner) prepareData(ctx context.Context, tokRaw []byte, tok *tokenizer.Tokenizer) error {
	valFraction := 0.01
	if v, ok := r.exp.Train["val-fraction"]; ok {
		f, err := strconv.ParseFloat(fmt.Sprint(v), 64)
		if err != nil {
			return fmt.Errorf("train: val-fraction: %w", err)
		}
		valFraction = f
	}
	specs, exts := r.data, r.exp.Ext
	if len(specs) == 0 {
		root, err := goEnv("GOROOT")
		if err != nil {
			return err
		}
		specs = []string{filepath.Join(root, "src")}
		if len(exts) == 0 {
			exts = []string{".go"}
		}
	}
	corpus, err := data.Open(specs, data.SourceOptions{Field: "text", Exts: exts})
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	sum := sha256.Sum256(tokRaw)
	bo := data.BuildOptions{Tokenizer: tok, TokenizerHash: hex.EncodeToString(sum[:]), Separator: int32(tok.Special().EOS), ValFraction: valFraction}
	r.dataDir = filepath.Join(r.out, "data")
	if _, ok := data.UpToDate(r.dataDir, corpus, bo); ok {
		return nil
	}
	fmt.Fprintf(r.log, "tokenizing %d bytes of text into %s\n", corpus.Bytes(), r.dataDir)
	stats, err := data.Build(ctx, corpus, r.dataDir, bo)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.log, "%d documents: %d training and %d held-out tokens\n", stats.Documents, stats.TrainTokens, stats.ValTokens)
	return nil
}

// linkData hard-links the shared tokenized corpus into a new run's
// directory (copying where links are refused).
func (r *runner) linkData(dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(r.dataDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		from, to := filepath.Join(r.dataDir, e.Name()), filepath.Join(dst, e.Name())
		os.Remove(to)
		if err := os.Link(from, to); err != nil {
			raw, err := os.ReadFile(from)
			if err != nil {
				return err
			}
			if err := os.WriteFile(to, raw, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// densessm runs the densessm command with args from the repository root,
// its stderr (and stdout unless jsonOut is given) appended to logPath, and
// decodes its stdout into jsonOut. On ctx's end the command gets an
// interrupt, as Ctrl-C would give it, and time to save its work. It
// returns the command's peak resident memory in bytes.
func (r *runner) densessm(ctx context.Context, logPath string, jsonOut any, args ...string) (int64, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s\n", commandLine(args))
	cmd := exec.CommandContext(ctx, r.bin, args...)
	cmd.Dir = r.root
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Minute
	var stdout strings.Builder
	cmd.Stderr = logf
	cmd.Stdout = logf
	if jsonOut != nil {
		cmd.Stdout = &stdout
	}
	err = cmd.Run()
	if jsonOut != nil {
		fmt.Fprint(logf, stdout.String())
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, context.Cause(ctx)
		}
		return 0, fmt.Errorf("densessm %s: %w (its output: %s)", args[0], err, logPath)
	}
	if jsonOut != nil {
		if err := json.Unmarshal([]byte(stdout.String()), jsonOut); err != nil {
			return 0, fmt.Errorf("densessm %s: its JSON: %w (its output: %s)", args[0], err, logPath)
		}
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10 // KiB on Linux
	}
	return rss, nil
}

// rel returns path relative to the repository root when it is inside it
// (so the commands recorded read as a user would type them there).
func (r *runner) rel(path string) string {
	if p, err := filepath.Rel(r.root, path); err == nil && !strings.HasPrefix(p, "..") {
		return p
	}
	return path
}

// commandLine is args as a shell command line.
func commandLine(args []string) string {
	q := []string{"densessm"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$*?[]{}()<>|&;\\`~#") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q = append(q, a)
	}
	return strings.Join(q, " ")
}

// writeOrCompare writes v as JSON to path, or when path exists checks that
// it holds v: a resumed run must continue with the settings it began with.
func writeOrCompare(path string, v any) error {
	want, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if have, err := os.ReadFile(path); err == nil {
		var a, b any
		if json.Unmarshal(have, &a) == nil && json.Unmarshal(want, &b) == nil && reflect.DeepEqual(a, b) {
			return nil
		}
		return fmt.Errorf("%s was started with other settings than the experiment's now: delete %s to redo it", path, filepath.Dir(path))
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return atomicfile.WriteFile(path, append(want, '\n'))
}

// writeJSON writes v as indented JSON, atomically.
func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(raw, '\n'))
}

// goEnv returns `go env NAME`.
func goEnv(name string) (string, error) {
	if v := os.Getenv(name); v != "" {
		return v, nil
	}
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
