package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at release time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "densessm",
		Short:         "Train, evaluate and run state-space language models (Mamba, RetNet, DenseSSM)",
		SilenceErrors: true, // run prints the error once, on one line
		SilenceUsage:  true,
	}
	root.PersistentFlags().String("max-memory", "", "memory budget, e.g. 8GiB (default: the memory available); work estimated to need more is refused before it starts")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		&cobra.Command{
			Use:   "version",
			Short: "Print the version of densessm and of the Go toolchain that built it",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				v := version
				if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					v = bi.Main.Version
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "densessm %s (%s %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return err
			},
		},
		newArchsCmd(),
		newBackendsCmd(),
		newPluginsCmd(),
		newInspectCmd(),
		newLogitsCmd(),
		newInitCmd(),
		newTokenizeCmd(),
		newTokenizerCmd(),
		newConvertCmd(),
		newBenchCmd(),
		newTrainCmd(),
		newGenerateCmd(),
		newEvalCmd(),
	)
	return root
}

func printLines(w io.Writer, lines []string) error {
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}
