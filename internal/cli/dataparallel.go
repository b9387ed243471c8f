package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/data"
	"github.com/densessm/densessm/distributed"
	"github.com/densessm/densessm/internal/readcap"
	"github.com/densessm/densessm/tokenizer"
	"github.com/densessm/densessm/train"
)

// MainDataParallel is the main of cmd/densessm-mpi: Main, for the train
// command (and help and version), run as one rank of the process group
// comm. Every rank runs the same command line; train then trains data
// parallel (docs/distributed.md): rank 0 writes the run directory
// (settings, tokenized data, checkpoints, metrics, plot) and prints the
// progress, the other ranks wait for the data at a barrier, read it, and
// print only their errors, each naming its rank. Ranks other than 0 write
// nothing to stdout. The caller ends the process group after it returns:
// MPI_Finalize on 0, MPI_Abort on an error.
func MainDataParallel(args []string, stdin io.Reader, stdout, stderr io.Writer, comm distributed.Comm) int {
	for _, a := range args {
		if len(a) > 0 && a[0] == '-' {
			continue
		}
		if a != "train" && a != "help" && a != "version" {
			fmt.Fprintf(stderr, "densessm: %s: the data-parallel command runs train only (and help, version)\n", a)
			return 1
		}
		break
	}
	if comm.Rank() > 0 {
		stdout = io.Discard
	}
	dp := &dataParallel{comm: comm, reducer: distributed.NewGradReducer(comm, 0)}
	dp.reducer.Profile = os.Getenv("DENSESSM_MPI_PROFILE") == "1"
	return mainContext(context.WithValue(context.Background(), dataParallelKey{}, dp), args, stdin, stdout, stderr)
}

type dataParallelKey struct{}

// dataParallel is the train command's view of its process group. Its
// methods take a nil receiver, the densessm command's: one process.
type dataParallel struct {
	comm    distributed.Comm
	reducer *distributed.GradReducer
	// The step time measured, for the all-reduce's share.
	steps            int
	first, stepsTime float64
	atFirst          distributed.Stats
}

// dataParallelOf returns the process group ctx carries, or nil.
func dataParallelOf(ctx context.Context) *dataParallel {
	dp, _ := ctx.Value(dataParallelKey{}).(*dataParallel)
	return dp
}

// follows reports whether this process is a rank other than 0: one that
// reads what rank 0 writes and writes nothing.
func (dp *dataParallel) follows() bool { return dp != nil && dp.comm.Rank() > 0 }

// begin silences a follower's progress output and makes err, when the
// command returns one, name the rank.
func (dp *dataParallel) begin(cmd *cobra.Command, err *error) func() {
	if dp == nil {
		return func() {}
	}
	if dp.follows() {
		cmd.SetErr(io.Discard)
	}
	return func() {
		if *err != nil {
			*err = fmt.Errorf("rank %d of %d: %w", dp.comm.Rank(), dp.comm.Size(), *err)
		}
	}
}

// prepareRun is prepareRun on rank 0 (and in one process); a follower
// waits until rank 0 has written the run directory and the tokenized
// corpus (the barrier of tokenizedCorpus), then reads the run's settings
// and tokenizer from it.
func (dp *dataParallel) prepareRun(cmd *cobra.Command, o *trainFlags, modelObject []byte) (runSettings, *tokenizer.Tokenizer, []byte, error) {
	if !dp.follows() {
		if dp != nil && !o.resume { // before the tokenizer is trained
			if err := distributed.CheckBatch(o.cfg.BatchSize, dp.comm.Size()); err != nil {
				return runSettings{}, nil, nil, err
			}
		}
		return prepareRun(cmd, o, modelObject)
	}
	if err := dp.comm.Barrier(cmd.Context()); err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("waiting for rank 0 to prepare the run: %w", err)
	}
	raw, err := readcap.File(filepath.Join(o.out, runFile), maxConfigFile)
	if err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("the run rank 0 prepared (is --out on a file system every rank sees?): %w", err)
	}
	var run runSettings
	if err := json.Unmarshal(raw, &run); err != nil {
		return runSettings{}, nil, nil, fmt.Errorf("%s: %v: %w", runFile, err, api.ErrCorrupt)
	}
	if o.resume && cmd.Flags().Changed("steps") {
		run.Trainer.Steps = o.cfg.Steps
	}
	if err := run.Trainer.Validate(); err != nil {
		return runSettings{}, nil, nil, err
	}
	path := filepath.Join(o.out, tokenizerFile)
	tokRaw, err := readcap.File(path, 256<<20)
	if err != nil {
		return runSettings{}, nil, nil, err
	}
	tok, err := parseTokenizer(tokRaw, path)
	if err != nil {
		return runSettings{}, nil, nil, err
	}
	return run, tok, tokRaw, nil
}

// tokenizedCorpus is tokenizedCorpus on rank 0, which then lets the
// followers go on (the barrier they wait at in prepareRun); a follower
// opens the token files rank 0 wrote.
func (dp *dataParallel) tokenizedCorpus(cmd *cobra.Command, dir string, run runSettings, tok *tokenizer.Tokenizer, tokRaw []byte) (*data.Tokens, *data.Tokens, error) {
	if dp.follows() {
		return openTokenFiles(filepath.Join(dir, dataDir))
	}
	trainTokens, valTokens, err := tokenizedCorpus(cmd, dir, run, tok, tokRaw)
	if err != nil || dp == nil {
		return trainTokens, valTokens, err
	}
	if err := dp.comm.Barrier(cmd.Context()); err != nil {
		trainTokens.Close()
		valTokens.Close()
		return nil, nil, fmt.Errorf("waiting for the other ranks: %w", err)
	}
	return trainTokens, valTokens, nil
}

// source returns this rank's share of the loader's batches (the loader
// itself in one process); the global batch must divide among the ranks.
func (dp *dataParallel) source(l *data.Loader, cfg train.Config) (train.Source, error) {
	if dp == nil {
		return l, nil
	}
	if err := distributed.CheckBatch(cfg.BatchSize, dp.comm.Size()); err != nil {
		return nil, err
	}
	return distributed.Shard(l, dp.comm.Rank(), dp.comm.Size())
}

// join makes tr a rank of the data-parallel run, after its model is built
// or restored: its steps all-reduce the gradients, and every rank must
// hold the same weights at the same step. A follower then trains without
// writing anything (no checkpoints, validation or metrics) and returns
// done true with Run's error, after waiting for rank 0 to finish.
func (dp *dataParallel) join(ctx context.Context, tr *train.Trainer, m api.Model, stderr io.Writer) (done bool, err error) {
	if dp == nil {
		return false, nil
	}
	if err := tr.SetReducer(dp.reducer); err != nil {
		return false, err
	}
	tm, ok := m.(api.Trainable)
	if !ok {
		return false, fmt.Errorf("data-parallel training: %s models do not train in this process: %w", m.Info().Arch, api.ErrUnsupported)
	}
	if err := distributed.Agree(ctx, dp.comm, "step", uint64(tr.Step())); err != nil {
		return false, err
	}
	if err := distributed.Agree(ctx, dp.comm, "weights", distributed.WeightsHash(tm)); err != nil {
		return false, err
	}
	n := dp.comm.Size()
	cfg := tr.Config()
	if !dp.follows() {
		if n == 1 {
			return false, nil
		}
		fmt.Fprintf(stderr, "data parallel: %d ranks, each %d of the %d sequences of a batch\n", n, cfg.BatchSize/n, cfg.BatchSize)
		return false, nil
	}
	tr.Dir, tr.Eval = "", nil
	if err := tr.Run(ctx); err != nil {
		return true, err
	}
	return true, dp.finish(ctx, tr, stderr)
}

// step records, on rank 0, the time of the steps after the first (which
// warms up) and the all-reduce's part of it.
func (dp *dataParallel) step(s train.StepMetrics) {
	if dp == nil {
		return
	}
	if dp.steps == 0 {
		dp.first, dp.atFirst = s.Elapsed, dp.reducer.Stats()
	}
	dp.steps++
	dp.stepsTime = s.Elapsed - dp.first
}

// finish waits, after the last step, until every rank is done (rank 0
// saving its checkpoint), and on rank 0 prints what the all-reduce cost.
func (dp *dataParallel) finish(ctx context.Context, tr *train.Trainer, stderr io.Writer) error {
	if dp == nil {
		return nil
	}
	if st := dp.reducer.Stats(); !dp.follows() && st.Calls > 0 && dp.comm.Size() > 1 {
		per := func(d time.Duration, calls int) float64 { return d.Seconds() * 1000 / float64(calls) }
		line := fmt.Sprintf("all-reduce: %.2f MB of gradients per step in %d buckets, %.2f ms per step",
			float64(st.Bytes)/float64(st.Calls)/1e6, st.Buckets/st.Calls, per(st.Total, st.Calls))
		if n := st.Calls - dp.atFirst.Calls; n > 0 && dp.stepsTime > 0 {
			total, wait := st.Total-dp.atFirst.Total, st.Wait-dp.atFirst.Wait
			line += fmt.Sprintf("; after the first step %.1f%% of the step time", 100*total.Seconds()/dp.stepsTime)
			if dp.reducer.Profile {
				line += fmt.Sprintf(" (%.1f%% waiting for slower ranks, %.1f%% summing)", 100*wait.Seconds()/dp.stepsTime, 100*(total-wait).Seconds()/dp.stepsTime)
			}
		}
		fmt.Fprintln(stderr, line)
	}
	if err := dp.comm.Barrier(ctx); err != nil {
		return fmt.Errorf("waiting for the other ranks to finish: %w", err)
	}
	return nil
}
