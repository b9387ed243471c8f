// Command densessm trains, evaluates and runs state-space language models
// (Mamba, RetNet and their DenseSSM variants) and inspects their checkpoints.
//
// Run `densessm help` for the commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/densessm/densessm/api"

	// Built-in backends and architectures register themselves at init.
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cpu"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit status. Errors,
// and panics turned into errors, are printed as one line on stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (status int) {
	err := func() (err error) {
		defer api.Recover(&err)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		cmd := newRootCmd(stdout, stderr)
		cmd.SetIn(stdin)
		cmd.SetArgs(args)
		return cmd.ExecuteContext(ctx)
	}()
	if err != nil {
		fmt.Fprintf(stderr, "densessm: %v\n", err)
		return 1
	}
	return 0
}
