package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at release time with
// -ldflags "-X github.com/densessm/densessm/internal/cli.version=v1.2.3".
var version = "dev"

// Version returns what densessm version prints, without the newline:
// "densessm VERSION (GO-VERSION GOOS/GOARCH)". VERSION is the one set at
// link time, else the module's version when built with go install
// MODULE@VERSION, else "dev".
func Version() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return fmt.Sprintf("densessm %s (%s %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "densessm",
		Short:         "Train, evaluate and run state-space language models (Mamba, RetNet, DenseSSM)",
		SilenceErrors: true, // Main prints the error once, on one line; Execute returns it
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
				_, err := fmt.Fprintln(cmd.OutOrStdout(), Version())
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
		newTuneStateCmd(),
		newGenerateCmd(),
		newVerifyCmd(),
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
