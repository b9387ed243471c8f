// Command dense-vs-base is the experiment of docs/experiments/dense-vs-base.md:
// does the dense hidden connection of DenseRetNet and DenseMamba (arXiv
// 2403.00818) lower the held-out loss at the scale one machine trains?
//
// From one file (config.yaml; quick.yaml with --quick) it trains every
// row at every size with every seed through the densessm command (one
// process a run, --jobs at a time), evaluates each on the held-out split
// and the multiple-choice task, measures each model's training and
// decoding speed and memory one at a time, and writes the tables and loss
// curves. It is resumable: a finished run is not redone, an interrupted one
// continues from its last checkpoint (densessm train --resume), so
// rerunning the same command after Ctrl-C or a crash goes on where it
// stopped.
//
//	go run ./experiments/dense-vs-base [--quick] [--out DIR] [--jobs N] [--only PATTERN] [--doc FILE.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/tokenizer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err == nil:
	case interrupted:
		fmt.Fprintln(os.Stderr, "interrupted: run the same command again to go on where it stopped")
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "dense-vs-base:", err)
		os.Exit(1)
	}
}

// options are the command line's.
type options struct {
	config, out, bin, only, doc string
	quick                       bool
	jobs                        int
	data                        []string
}

// run is the whole command; it changes the working directory to the
// repository root.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	var o options
	fs := flag.NewFlagSet("dense-vs-base", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.BoolVar(&o.quick, "quick", false, "the smoke test: quick.yaml's tiny models on a small corpus, about a minute")
	fs.StringVar(&o.config, "config", "", "experiment file (default: experiments/dense-vs-base/config.yaml, or quick.yaml with --quick)")
	fs.StringVar(&o.out, "out", "", "directory of the runs, resumable (default: ~/.cache/densessm/dense-vs-base, or dense-vs-base-NAME for an experiment file NAME.yaml other than config.yaml)")
	fs.StringVar(&o.bin, "densessm", "", "densessm executable to run (default: build ./cmd/densessm into OUT/bin)")
	fs.IntVar(&o.jobs, "jobs", 0, "training runs at a time (default: cores / the experiment's threads)")
	fs.StringVar(&o.only, "only", "", "run only the runs whose ID SIZE/ROW/seedN matches this pattern (path.Match), e.g. 's/retnet/seed1'")
	fs.StringVar(&o.doc, "doc", "", "Markdown file whose generated section (between the markers) receives the tables; figures go beside it")
	fs.Func("data", "training text, as densessm train --data (repeatable; default: the experiment's, else the .go files of GOROOT/src)", func(s string) error {
		o.data = append(o.data, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for i, d := range o.data {
		abs, err := filepath.Abs(d)
		if err != nil {
			return err
		}
		o.data[i] = abs
	}
	for _, p := range []*string{&o.out, &o.bin, &o.doc, &o.config} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	return experimentMain(ctx, o, root, stdout)
}

func experimentMain(ctx context.Context, o options, root string, log io.Writer) error {
	start := time.Now()
	name := "config.yaml"
	if o.quick {
		name = "quick.yaml"
	}
	if o.config == "" {
		o.config = filepath.Join(root, "experiments", "dense-vs-base", name)
	}
	exp, err := readExperiment(o.config)
	if err != nil {
		return err
	}
	if o.out == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return err
		}
		dir := "dense-vs-base"
		if stem := strings.TrimSuffix(filepath.Base(o.config), filepath.Ext(o.config)); stem != "config" {
			dir += "-" + stem
		}
		o.out = filepath.Join(home, ".cache", "densessm", dir)
	}
	if o.jobs <= 0 {
		o.jobs = max(1, runtime.NumCPU()/exp.Threads)
	}
	data := o.data
	if len(data) == 0 {
		for _, d := range exp.Data {
			data = append(data, os.Expand(d, expandGo))
		}
	}
	tokRaw, err := os.ReadFile(exp.Tokenizer)
	if err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}
	tok, err := tokenizer.FromJSON(tokRaw)
	if err != nil {
		return fmt.Errorf("tokenizer %s: %w", exp.Tokenizer, err)
	}
	shapes, err := exp.shapes(ctx, tok.VocabSize())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(o.out, "shapes.json"), shapes); err != nil {
		return err
	}
	r := &runner{exp: exp, root: root, out: o.out, bin: o.bin, data: data, shapes: shapes, log: log}
	if r.bin == "" {
		r.bin = filepath.Join(o.out, "bin", "densessm")
		fmt.Fprintf(log, "building %s\n", r.bin)
		build := exec.CommandContext(ctx, "go", "build", "-o", r.bin, "./cmd/densessm")
		build.Stdout, build.Stderr = log, log
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/densessm: %w", err)
		}
	}
	if err := r.prepareData(ctx, tokRaw, tok); err != nil {
		return err
	}
	// The runs --only selects are run; the report has every finished one.
	var all, selected []spec
	for _, s := range exp.Sizes {
		for _, row := range exp.Rows {
			if !row.inSize(s.Name) {
				continue
			}
			for _, seed := range exp.Seeds {
				sp := spec{Size: s.Name, Row: row.Name, Seed: seed}
				ok, err := path.Match(o.only, sp.ID())
				if err != nil {
					return fmt.Errorf("--only: %w", err)
				}
				all = append(all, sp)
				if o.only == "" || ok {
					selected = append(selected, sp)
				}
			}
		}
	}
	if len(selected) == 0 {
		return fmt.Errorf("--only %q matches no run", o.only)
	}
	fmt.Fprintf(log, "%d runs, %d at a time, in %s\n", len(selected), o.jobs, o.out)
	ran, err := r.runAll(ctx, selected, o.jobs)
	if err != nil {
		return err
	}
	var results []result
	for _, sp := range all {
		res, ok := ran[sp.ID()]
		if !ok {
			if res, ok, err = r.finished(sp); err != nil {
				return err
			}
		}
		if ok {
			results = append(results, res)
		}
	}
	benches := map[string]benchResult{}
	for _, sp := range results {
		k := runKey(sp.Size, sp.Row)
		if _, ok := benches[k]; ok {
			continue
		}
		b, err := r.bench(ctx, sp.Size, sp.Row)
		if err != nil {
			return err
		}
		benches[k] = b
	}
	rep := &report{exp: exp, shapes: shapes, results: results, benches: benches, out: o.out, config: filepath.Base(o.config)}
	if err := rep.write(o.doc); err != nil {
		return err
	}
	fmt.Fprintf(log, "done in %s: %s\n", time.Since(start).Round(time.Second), filepath.Join(o.out, "results.md"))
	return nil
}

// runAll runs specs jobs at a time and returns their results by ID; the
// first error stops the others (each interrupted run saves a checkpoint to
// resume from).
func (r *runner) runAll(ctx context.Context, specs []spec, jobs int) (map[string]result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	results := make(map[string]result, len(specs))
	var (
		mu       sync.Mutex
		finished int
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan int)
	for range jobs {
		wg.Go(func() {
			for i := range next {
				start := time.Now()
				res, cached, err := r.run(ctx, specs[i])
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("run %s: %w", specs[i].ID(), err)
						cancel(firstErr)
					}
				} else {
					finished++
					results[specs[i].ID()] = res
					how := "done before"
					if !cached {
						how = time.Since(start).Round(time.Second).String()
					}
					fmt.Fprintf(r.log, "[%d/%d] %s (%s): held-out loss %.4f, mc acc %.3f\n",
						finished, len(specs), specs[i].ID(), how, res.HeldOut.NLL, res.MC.Acc)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range specs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = context.Cause(ctx)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return results, nil
}

// expandGo expands $GOROOT (and other `go env` names) in the experiment's paths.
func expandGo(name string) string {
	v, err := goEnv(name)
	if err != nil {
		return ""
	}
	return v
}

// repoRoot is the directory of the go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if raw, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			slices.Contains(strings.Split(string(raw), "\n"), "module github.com/densessm/densessm") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the densessm repository (no go.mod of github.com/densessm/densessm above the working directory)")
		}
		dir = parent
	}
}
