package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/checkpoint"
)

func newInitCmd() *cobra.Command {
	var (
		arch, configFile, out string
		seed                  int64
	)
	cmd := &cobra.Command{
		Use:   "init --arch ARCH [--config config.json] --out DIR",
		Short: "Create a model with freshly initialised weights and save it (config.json + model.safetensors)",
		Long: `init builds a model of a registered architecture with the reference
initialisation for training from scratch, seeded by --seed, and saves it in
the Hugging Face layout. --config takes a config.json in any form the
architecture reads; without it the architecture's small default is used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutDir(out); err != nil {
				return err
			}
			a, err := architecture(cmd, arch)
			if err != nil {
				return fmt.Errorf("--arch: %w", err)
			}
			cfg, err := readConfig(a, configFile)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			build, err := buildOptions(cmd, 0)
			if err != nil {
				return err
			}
			if err := checkModelMemory(cmd, cfg, build.WeightDType(), 0); err != nil {
				return err
			}
			build.Seed = seed
			spin := newSpinner(cmd, "initialising")
			m, err := a.New(cmd.Context(), cfg, build)
			spin.done()
			if err != nil {
				return err
			}
			defer m.Close()
			if err := cmd.Context().Err(); err != nil {
				return err
			}
			spin = newSpinner(cmd, "saving")
			defer spin.done()
			return checkpoint.SaveModel(cmd.Context(), out, m)
		},
	}
	f := cmd.Flags()
	f.StringVar(&arch, "arch", "", "architecture (see: densessm archs)")
	f.StringVar(&configFile, "config", "", "config.json to build from (default: the architecture's small default)")
	f.StringVar(&out, "out", "", "output directory")
	f.Int64Var(&seed, "seed", 1, "seed of the initialisation")
	backendFlag(f)
	cmd.MarkFlagRequired("arch")
	cmd.MarkFlagRequired("out")
	return cmd
}
