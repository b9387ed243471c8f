package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/generate"
	"github.com/densessm/densessm/train"
)

// benchSeed seeds the random weights, inputs and token ids of every bench
// command, so that runs are comparable.
const benchSeed = 1

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the CPU backend: GEMM throughput, model prefill, decode and training speed (JSON)",
		Long: `bench runs micro- and model benchmarks on the CPU backend and prints one JSON
object per run, for scripts such as bench/compare.sh that set the results
side by side with OpenBLAS and PyTorch.

--threads T sets the backend's worker count and, for the run, GOMAXPROCS,
so that T = 1 uses one core as OPENBLAS_NUM_THREADS=1 or
torch.set_num_threads(1) would; 0 uses every core.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBenchGemmCmd(), newBenchModelCmd())
	return cmd
}

// gemmReport is the JSON result of `bench gemm`.
type gemmReport struct {
	M              int     `json:"m"`
	N              int     `json:"n"`
	K              int     `json:"k"`
	TransB         bool    `json:"trans_b"`
	Threads        int     `json:"threads"`
	Reps           int     `json:"reps"`
	SecondsMedian  float64 `json:"seconds_median"`
	GFLOPS         float64 `json:"gflops"`
	Kernel         string  `json:"kernel"`
	MaxSampleError float64 `json:"max_sample_error"`
}

func newBenchGemmCmd() *cobra.Command {
	var m, n, k, threads, reps int
	var transB bool
	cmd := &cobra.Command{
		Use:   "gemm --m M --n N --k K [--trans-b] [--threads T] [--reps R]",
		Short: "Time C = A B (A [M,K], B [K,N], float32) through the backend's MatMul",
		Long: `gemm times the CPU backend's MatMul on random float32 matrices A [M,K] and
B [K,N] (row-major; with --trans-b, B is stored [N,K] and used transposed,
as a model's weights [out,in] are), after one untimed warm-up call, and
prints the median of R timed calls and the rate 2MNK/time in GFLOP/s.

It checks 16 entries of the result against a float64 dot product and
reports the largest error relative to sum |a||b| as max_sample_error (an
error above 1e-4 fails the command). "kernel" names the GEMM micro-kernel
the backend selected ("avx512", "avx2", "generic"), or "unknown" for a
backend that does not say.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := positive(map[string]int{"--m": m, "--n": n, "--k": k, "--reps": reps}); err != nil {
				return err
			}
			// A, B and C as Go slices and as tensors, and B once more with --trans-b.
			elems := 2*float64(m)*float64(k) + 3*float64(k)*float64(n) + 2*float64(m)*float64(n)
			if err := checkMemory(cmd, int64(min(4*elems, 1<<62)), fmt.Sprintf("a %dx%dx%d GEMM", m, n, k)); err != nil {
				return err
			}
			b, restore, err := benchBackend(cmd, threads)
			if err != nil {
				return err
			}
			defer restore()
			rep, err := benchGemm(cmd.Context(), b, m, n, k, transB, reps)
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), rep)
		},
	}
	f := cmd.Flags()
	f.IntVar(&m, "m", 1024, "rows of A and C")
	f.IntVar(&n, "n", 1024, "columns of B and C")
	f.IntVar(&k, "k", 1024, "columns of A, rows of B")
	f.BoolVar(&transB, "trans-b", false, "store B as [N,K] and use it transposed")
	f.IntVar(&threads, "threads", 1, "backend threads (0: every core)")
	f.IntVar(&reps, "reps", 10, "timed calls; the median is reported")
	return cmd
}

// benchGemm runs the GEMM benchmark on b.
func benchGemm(ctx context.Context, b api.Backend, m, n, k int, transB bool, reps int) (*gemmReport, error) {
	for _, s := range []api.Shape{{m, k}, {k, n}, {m, n}} {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("bench gemm: %w", err)
		}
	}
	rng := rand.New(rand.NewPCG(benchSeed, 0))
	a := randomFloats(rng, m*k)
	bm := randomFloats(rng, k*n)
	ta, tb := api.FromFloat32s(b, a, m, k), api.FromFloat32s(b, bm, k, n)
	if transB {
		tb = api.FromFloat32s(b, bm, n, k)
	}
	tc := b.Alloc(api.F32, m, n)
	b.MatMul(tc, ta, tb, false, transB, 1, 0) // warm-up: packing buffers, worker pool
	times := make([]float64, reps)
	for r := range times {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := time.Now()
		b.MatMul(tc, ta, tb, false, transB, 1, 0)
		times[r] = time.Since(start).Seconds()
	}
	errMax := gemmSampleError(rng, api.Float32s(tc), a, bm, m, n, k, transB)
	if !(errMax <= 1e-4) {
		return nil, fmt.Errorf("bench gemm: MatMul result differs from a float64 reference by %.3g (relative): %w", errMax, api.ErrInternal)
	}
	sec := median(times)
	return &gemmReport{
		M: m, N: n, K: k, TransB: transB, Threads: b.Threads(), Reps: reps,
		SecondsMedian: sec, GFLOPS: 2 * float64(m) * float64(n) * float64(k) / sec / 1e9,
		Kernel: gemmKernelName(b), MaxSampleError: errMax,
	}, nil
}

// gemmSampleError compares 16 random entries of c = a b (b stored [n,k]
// when transB) with float64 dot products and returns the largest
// |c - ref| / sum |a||b| (0 where that sum is 0).
func gemmSampleError(rng *rand.Rand, c, a, b []float32, m, n, k int, transB bool) float64 {
	worst := 0.0
	for range 16 {
		i, j := rng.IntN(m), rng.IntN(n)
		var ref, mag float64
		for p := range k {
			bpj := b[p*n+j]
			if transB {
				bpj = b[j*k+p]
			}
			x := float64(a[i*k+p]) * float64(bpj)
			ref += x
			mag += math.Abs(x)
		}
		d := math.Abs(float64(c[i*n+j]) - ref)
		if mag > 0 {
			d /= mag
		}
		worst = max(worst, d)
	}
	return worst
}

// modelReport is the JSON result of `bench model`. A rate is null when its
// measurement was not asked for.
type modelReport struct {
	Arch              string   `json:"arch"`
	Backend           string   `json:"backend"`
	Plugin            string   `json:"plugin,omitempty"`
	Parameters        int64    `json:"parameters"`
	WeightBytes       int64    `json:"weight_bytes"`
	Weights           string   `json:"weights"`
	Threads           int      `json:"threads"`
	Reps              int      `json:"reps"`
	PrefillTokens     int      `json:"prefill_tokens"`
	PrefillLast       bool     `json:"prefill_last"`
	PrefillSeconds    *float64 `json:"prefill_seconds"`
	PrefillTokensPerS *float64 `json:"prefill_tokens_per_s"`
	DecodeTokens      int      `json:"decode_tokens"`
	DecodeTokensPerS  *float64 `json:"decode_tokens_per_s"`
	TrainBatch        int      `json:"train_batch,omitempty"`
	TrainSeq          int      `json:"train_seq,omitempty"`
	TrainStepSeconds  *float64 `json:"train_step_seconds,omitempty"`
	TrainTokensPerS   *float64 `json:"train_tokens_per_s,omitempty"`
	TrainLoss         *float64 `json:"train_loss,omitempty"`
	// TrainDiverged is set when the training step's loss is NaN or
	// infinite (JSON cannot hold it): train_loss is then left out.
	TrainDiverged bool `json:"train_diverged,omitempty"`
}

// modelBenchOptions are the flags of `bench model`.
type modelBenchOptions struct {
	arch, configFile      string
	prefill, decode, reps int
	threads               int
	prefillLast           bool
	train                 bool
	trainBatch, trainSeq  int
	learningRate          float64
}

func newBenchModelCmd() *cobra.Command {
	var o modelBenchOptions
	cmd := &cobra.Command{
		Use:   "model --arch ARCH [--config config.json] --prefill N --decode N [--threads T] [--weights f32|bf16|q8] [--train-step]",
		Short: "Time prefill, decode and (optionally) a training step of a randomly initialised model",
		Long: `model builds a model of a registered architecture with random weights (seed 1)
from --config (any form the architecture reads) or the architecture's small
default, then measures on one sequence:

  prefill  the parallel form (Forward) over --prefill random tokens: the
           median of --reps runs after a 16-token warm-up; with
           --prefill-last, the prompt prefill of densessm generate instead
           (windows of 512 tokens from a new state, computing the logits of
           the last position only, as llama.cpp's llama-bench does);
  decode   --decode recurrent Steps after one untimed Step (the first step
           sizes the state's buffers);
  train    with --train-step, for models that learn: ZeroGrad, LossAndGrad
           on a batch of --train-batch sequences of --train-seq tokens, and
           a plain SGD update of every parameter; the median of --reps steps
           after one untimed step.

--prefill 0 or --decode 0 skips that measurement (its rate is null).
--weights bf16 or q8 stores the weight matrices in that precision (a model
with such weights does not train). weight_bytes is the size of every
parameter as stored: the bytes a decode step reads at least once, which
divided into the memory bandwidth gives the decode bound.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := positive(map[string]int{"--reps": o.reps, "--train-batch": o.trainBatch, "--train-seq": o.trainSeq}); err != nil {
				return err
			}
			if o.prefill < 0 || o.decode < 0 {
				return fmt.Errorf("--prefill %d and --decode %d must not be negative: %w", o.prefill, o.decode, api.ErrOutOfRange)
			}
			if !(o.learningRate >= 0) || math.IsInf(o.learningRate, 0) {
				return fmt.Errorf("--lr %g: want a finite learning rate, 0 or more: %w", o.learningRate, api.ErrConfig)
			}
			a, err := architecture(cmd, o.arch)
			if err != nil {
				return fmt.Errorf("--arch: %w", err)
			}
			cfg, err := readConfig(a, o.configFile)
			if err != nil {
				return err
			}
			build, err := buildOptions(cmd, o.threads)
			if err != nil {
				return err
			}
			if err := checkBenchMemory(cmd, cfg, build.WeightDType(), o); err != nil {
				return err
			}
			defer setGOMAXPROCS(o.threads)()
			rep, err := benchModel(cmd.Context(), build, a, cfg, o)
			if err != nil {
				return err
			}
			if rep.TrainDiverged {
				fmt.Fprintf(cmd.ErrOrStderr(), "densessm: bench model: the training step's loss is not finite (--lr %g too large?)\n", o.learningRate)
			}
			return writeJSON(cmd.OutOrStdout(), rep)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.arch, "arch", "", "architecture (see: densessm archs)")
	f.StringVar(&o.configFile, "config", "", "config.json of the model shape (default: the architecture's small default)")
	f.IntVar(&o.prefill, "prefill", 512, "tokens of the timed prefill (0 skips it)")
	f.IntVar(&o.decode, "decode", 32, "timed decode steps (0 skips them)")
	f.IntVar(&o.reps, "reps", 1, "timed prefills and training steps; the median is reported")
	f.BoolVar(&o.prefillLast, "prefill-last", false, "time the prefill as generate runs a prompt: windows from a state, only the last logits")
	f.IntVar(&o.threads, "threads", 1, "backend threads (0: every core)")
	backendFlag(f)
	weightsFlag(f)
	f.BoolVar(&o.train, "train-step", false, "also time a training step (forward, backward, SGD)")
	f.IntVar(&o.trainBatch, "train-batch", 8, "sequences per training batch")
	f.IntVar(&o.trainSeq, "train-seq", 128, "tokens per training sequence")
	f.Float64Var(&o.learningRate, "lr", 1e-3, "SGD learning rate of the training step")
	cmd.MarkFlagRequired("arch")
	return cmd
}

// checkBenchMemory refuses a bench model run whose model (its weight
// matrices stored in weights), prefill and training step would not fit in
// memory. Only a model of F32 weights trains (the step of any other is
// refused), so only its training step is counted.
func checkBenchMemory(cmd *cobra.Command, cfg api.Config, weights api.DType, o modelBenchOptions) error {
	est, ok := api.EstimateMemory(cfg)
	if !ok {
		return nil
	}
	tokens := max(o.prefill, 16)
	if o.prefillLast {
		tokens = min(tokens, 512) // a window at a time
	}
	need := est.InferenceBytesFor(weights, 1, tokens)
	if o.train && weights == api.F32 {
		need = max(need, est.TrainingBytes(o.trainBatch, o.trainSeq, 0))
	}
	return checkMemory(cmd, need, fmt.Sprintf("bench model (%s, %d parameters)", cfg.ArchName(), est.Parameters))
}

// benchModel builds a model of a with cfg as build says and runs the
// measurements o asks for.
func benchModel(ctx context.Context, build api.BuildOptions, a api.Architecture, cfg api.Config, o modelBenchOptions) (*modelReport, error) {
	build.Seed = benchSeed
	m, err := a.New(ctx, cfg, build)
	if err != nil {
		return nil, fmt.Errorf("bench model: %w", err)
	}
	defer m.Close()
	info := m.Info()
	rep := &modelReport{Arch: a.Name(), Backend: info.Backend, Plugin: info.Plugin, Threads: info.Threads, Reps: o.reps,
		PrefillTokens: o.prefill, PrefillLast: o.prefillLast, DecodeTokens: o.decode}
	rep.Weights = api.WeightName(build.WeightDType())
	for _, p := range m.Params() {
		n := p.Shape.NumElements()
		rep.Parameters += int64(n)
		rep.WeightBytes += int64(p.DType.Bytes(n))
	}
	rng := rand.New(rand.NewPCG(benchSeed, 1))
	vocab := cfg.Vocab()
	if o.prefill > 0 {
		sec, err := timePrefill(ctx, m, randomIDs(rng, o.prefill, vocab), o.reps, o.prefillLast)
		if err != nil {
			return nil, fmt.Errorf("bench model: prefill: %w", err)
		}
		rep.PrefillSeconds = &sec
		rep.PrefillTokensPerS = ptr(float64(o.prefill) / sec)
	}
	if o.decode > 0 {
		sec, err := timeDecode(ctx, m, randomIDs(rng, o.decode+1, vocab))
		if err != nil {
			return nil, fmt.Errorf("bench model: decode: %w", err)
		}
		rep.DecodeTokensPerS = ptr(float64(o.decode) / sec)
	}
	if o.train {
		tm, err := train.Stepper(m)
		if err != nil {
			return nil, fmt.Errorf("bench model: --train-step: %w", err)
		}
		batch := api.Batch{Inputs: make([][]int32, o.trainBatch), Targets: make([][]int32, o.trainBatch)}
		for i := range batch.Inputs {
			seq := randomIDs(rng, o.trainSeq+1, vocab)
			batch.Inputs[i], batch.Targets[i] = seq[:o.trainSeq], seq[1:]
		}
		sec, loss, err := timeTrainStep(ctx, tm, batch, float32(o.learningRate), o.reps)
		if err != nil {
			return nil, fmt.Errorf("bench model: train step: %w", err)
		}
		rep.TrainBatch, rep.TrainSeq = o.trainBatch, o.trainSeq
		rep.TrainStepSeconds = &sec
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			rep.TrainDiverged = true
		} else {
			rep.TrainLoss = &loss
		}
		rep.TrainTokensPerS = ptr(float64(o.trainBatch*o.trainSeq) / sec)
	}
	return rep, nil
}

// timePrefill runs a short warm-up and then reps timed prefills of ids
// (Forward, or with last generate.PrefillLast from a new state), and
// returns the median seconds.
func timePrefill(ctx context.Context, m api.Model, ids []int32, reps int, last bool) (float64, error) {
	prefill := func(ids []int32) error {
		if !last {
			_, err := m.Forward(ctx, [][]int32{ids}, api.Form{})
			return err
		}
		s, err := m.NewState(1)
		if err != nil {
			return err
		}
		defer s.Close()
		t, err := generate.PrefillLast(ctx, m, s, [][]int32{ids})
		if err == nil {
			t.Backend().Free(t)
		}
		return err
	}
	if err := prefill(ids[:min(len(ids), 16)]); err != nil {
		return 0, err
	}
	times := make([]float64, reps)
	for r := range times {
		start := time.Now()
		if err := prefill(ids); err != nil {
			return 0, err
		}
		times[r] = time.Since(start).Seconds()
	}
	return median(times), nil
}

// timeDecode feeds ids[0] untimed and then ids[1:] one Step at a time, and
// returns the seconds the timed steps took.
func timeDecode(ctx context.Context, m api.Model, ids []int32) (float64, error) {
	s, err := m.NewState(1)
	if err != nil {
		return 0, err
	}
	if _, err := m.Step(ctx, s, ids[:1]); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := 1; i < len(ids); i++ {
		if _, err := m.Step(ctx, s, ids[i:i+1]); err != nil {
			return 0, err
		}
	}
	return time.Since(start).Seconds(), nil
}

// timeTrainStep runs one untimed and then reps timed training steps (loss,
// gradients and a plain SGD update through the model's stepper) and
// returns the median seconds and the last loss.
func timeTrainStep(ctx context.Context, m api.TrainStepper, batch api.Batch, lr float32, reps int) (sec, loss float64, err error) {
	req := api.TrainStepRequest{Batches: []api.Batch{batch}, Optimizer: api.OptimizerConfig{Name: api.SGD, LR: float64(lr)}, LR: float64(lr)}
	step := func() error {
		res, err := m.TrainStep(ctx, req)
		loss = res.Loss
		if errors.Is(err, api.ErrNotFinite) {
			loss = math.NaN() // reported as train_diverged
			return nil
		}
		return err
	}
	if err := step(); err != nil {
		return 0, 0, err
	}
	times := make([]float64, reps)
	for r := range times {
		start := time.Now()
		if err := step(); err != nil {
			return 0, 0, err
		}
		times[r] = time.Since(start).Seconds()
	}
	return median(times), loss, nil
}

// benchBackend returns a CPU backend with threads workers (every core when
// 0) and sets GOMAXPROCS to match for the run; restore puts it back.
func benchBackend(cmd *cobra.Command, threads int) (b api.Backend, restore func(), err error) {
	budget, err := maxMemoryFlag(cmd)
	if err != nil {
		return nil, nil, err
	}
	b, err = api.NewBackend("cpu", api.BackendOptions{Threads: threads, MaxMemory: budget})
	if err != nil {
		return nil, nil, fmt.Errorf("--threads: %w", err)
	}
	return b, setGOMAXPROCS(threads), nil
}

// setGOMAXPROCS sets GOMAXPROCS to threads (unless 0) and returns what
// puts it back.
func setGOMAXPROCS(threads int) (restore func()) {
	if threads == 0 {
		return func() {}
	}
	old := runtime.GOMAXPROCS(threads)
	return func() { runtime.GOMAXPROCS(old) }
}

// positive returns an error naming the first flag (in sorted order) whose
// value is below 1.
func positive(flags map[string]int) error {
	names := make([]string, 0, len(flags))
	for name := range flags {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if flags[name] < 1 {
			return fmt.Errorf("%s %d must be at least 1: %w", name, flags[name], api.ErrOutOfRange)
		}
	}
	return nil
}

// randomFloats returns n values uniform in [-1, 1).
func randomFloats(rng *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = 2*rng.Float32() - 1
	}
	return out
}

// randomIDs returns n token ids uniform in [0, vocab).
func randomIDs(rng *rand.Rand, n, vocab int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(rng.IntN(vocab))
	}
	return out
}

// median returns the median of xs (the mean of the middle two for an even
// count); xs is sorted in place and must not be empty.
func median(xs []float64) float64 {
	slices.Sort(xs)
	h := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[h]
	}
	return (xs[h-1] + xs[h]) / 2
}

func ptr[T any](v T) *T { return &v }

// writeJSON prints v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// gemmKernelName returns the GEMM micro-kernel a backend reports, or
// "unknown".
func gemmKernelName(b api.Backend) string {
	if k, ok := b.(api.KernelNamer); ok {
		return k.GEMMKernel()
	}
	return "unknown"
}
