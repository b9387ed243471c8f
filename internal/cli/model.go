package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/internal/readcap"
	"github.com/densessm/densessm/internal/sysmem"
)

// maxConfigFile caps a config.json given with --config.
const maxConfigFile = 16 << 20

// loadFlags are the flags of every command that loads a model directory.
type loadFlags struct {
	allowExtra, allowNonFinite bool
	// weights, when set, overrides --weights (convert --dtype sets it).
	weights api.DType
}

func (l *loadFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&l.allowExtra, "allow-extra", false, "ignore tensors in the checkpoint that the model does not have")
	f.BoolVar(&l.allowNonFinite, "allow-nonfinite", false, "load weights holding NaN or Inf (refused by default)")
	backendFlag(f)
	weightsFlag(f)
}

// weightsFlag registers --weights on a command that builds a model for
// inference.
func weightsFlag(f *pflag.FlagSet) {
	f.String("weights", "", "storage of the weight matrices: f32, bf16 or q8 (8-bit blocks; quantized at load), for less memory and faster decoding (default: as the weights file stores them, f32 for ordinary checkpoints)")
}

// backendFlag registers --backend on a command that builds a model.
func backendFlag(f *pflag.FlagSet) {
	f.String("backend", "cpu", "backend to build the model on: one in this program, or one a plugin serves (densessm backends lists them)")
}

// buildOptions returns the options that build a model on --backend with
// threads workers, the memory budget of --max-memory and the weights of
// --weights (where the command has it), after checking
// that the backend exists (looking for plugins when it is not built in).
func buildOptions(cmd *cobra.Command, threads int) (api.BuildOptions, error) {
	budget, err := maxMemoryFlag(cmd)
	if err != nil {
		return api.BuildOptions{}, err
	}
	o := api.BuildOptions{BackendOptions: api.BackendOptions{Threads: threads, MaxMemory: budget}}
	if f := cmd.Flag("backend"); f != nil {
		o.Backend = f.Value.String()
	}
	if f := cmd.Flag("weights"); f != nil && f.Value.String() != "" {
		if o.Weights, err = api.ParseWeightDType(f.Value.String()); err != nil {
			return api.BuildOptions{}, fmt.Errorf("--weights %q: want f32, bf16 or q8: %w", f.Value.String(), api.ErrConfig)
		}
	}
	if err := o.BackendOptions.Validate(); err != nil {
		return api.BuildOptions{}, fmt.Errorf("--threads: %w", err)
	}
	if err := findBackend(cmd, o.BackendName()); err != nil {
		return api.BuildOptions{}, fmt.Errorf("--backend: %w", err)
	}
	return o, nil
}

// maxMemoryFlag returns the root's --max-memory in bytes (0 when unset).
func maxMemoryFlag(cmd *cobra.Command) (int64, error) {
	f := cmd.Flag("max-memory")
	if f == nil || f.Value.String() == "" {
		return 0, nil
	}
	n, err := sysmem.ParseSize(f.Value.String())
	if err != nil {
		return 0, fmt.Errorf("--max-memory: %v: %w", err, api.ErrConfig)
	}
	if n == 0 {
		return 0, fmt.Errorf("--max-memory 0: want a positive size: %w", api.ErrConfig)
	}
	return n, nil
}

// memoryBudget returns the bytes the command may use: --max-memory, or
// what the system has available. ok is false when neither is known.
func memoryBudget(cmd *cobra.Command) (budget int64, ok bool, err error) {
	budget, err = maxMemoryFlag(cmd)
	if err != nil || budget > 0 {
		return budget, budget > 0, err
	}
	budget, ok = sysmem.Available()
	return budget, ok, nil
}

// checkMemory refuses work whose estimated need exceeds the memory budget,
// before anything is allocated; what says what needs it.
func checkMemory(cmd *cobra.Command, need int64, what string) error {
	budget, ok, err := memoryBudget(cmd)
	if err != nil || !ok || need <= budget {
		return err
	}
	source := "available"
	if f := cmd.Flag("max-memory"); f != nil && f.Changed {
		source = "allowed by --max-memory"
	}
	return fmt.Errorf("%s needs about %s, more than the %s %s: %w",
		what, sysmem.Format(need), sysmem.Format(budget), source, api.ErrOutOfMemory)
}

// checkModelMemory refuses a model whose weights (stored as weights says:
// api.BuildOptions.Weights, Invalid for F32), recurrent state and the
// activations of a parallel pass over tokens tokens (0 for none) would not
// fit the budget. Configurations that do not estimate their memory pass.
func checkModelMemory(cmd *cobra.Command, cfg api.Config, weights api.DType, tokens int) error {
	est, ok := api.EstimateMemory(cfg)
	if !ok {
		return nil
	}
	what := fmt.Sprintf("a %s model of %d parameters", cfg.ArchName(), est.Parameters)
	if weights != api.Invalid && weights != api.F32 {
		what += fmt.Sprintf(" with %s weights", api.WeightName(weights))
	}
	if tokens > 0 {
		what += fmt.Sprintf(" over %d tokens", tokens)
	}
	return checkMemory(cmd, est.InferenceBytesFor(weights, 1, tokens), what)
}

// readConfig returns the architecture's configuration from configFile, or
// its small default when configFile is empty.
func readConfig(a api.Architecture, configFile string) (api.Config, error) {
	if configFile == "" {
		return a.DefaultConfig(), nil
	}
	data, err := readcap.File(configFile, maxConfigFile)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	cfg, err := a.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", configFile, err)
	}
	return cfg, nil
}

// loadModel loads the model directory dir for a command that will run it
// over tokens tokens in a parallel form (0: recurrent only), refusing it
// before allocation when it would not fit in memory, with a progress bar
// for large weights.
func loadModel(cmd *cobra.Command, dir, arch string, threads, tokens int, flags loadFlags) (api.Model, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("--model %s: not a directory (want config.json beside the weights): %w", dir, api.ErrConfig)
	}
	build, err := buildOptions(cmd, threads)
	if err != nil {
		return nil, err
	}
	if flags.weights != api.Invalid {
		build.Weights = flags.weights
	}
	if arch != "" {
		if err := findArchitecture(cmd, arch); err != nil {
			return nil, fmt.Errorf("--arch: %w", err)
		}
	} else if name := checkpoint.ModelType(dir); name != "" {
		findArchitecture(cmd, name) // a plugin's; LoadModel says what is wrong
	}
	var bar *progress
	defer func() { bar.done() }()
	m, err := checkpoint.LoadModel(cmd.Context(), dir, checkpoint.LoadOptions{
		Build:          build,
		Arch:           arch,
		AllowExtra:     flags.allowExtra,
		AllowNonFinite: flags.allowNonFinite,
		CheckConfig:    func(cfg api.Config, weights api.DType) error { return checkModelMemory(cmd, cfg, weights, tokens) },
		Progress: func(done, total int64) {
			if bar == nil && total >= 64<<20 {
				bar = newProgress(cmd, total, "loading", true)
			}
			bar.set(done)
		},
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}
