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
	"runtime/debug"

	"github.com/densessm/densessm/api"

	// Built-in backends and architectures register themselves at init.
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	_ "github.com/densessm/densessm/backends/cpu"
)

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// gcPercent is the garbage collector's GOGC for the command, unless the
// environment sets GOGC. A model's weights are most of the live heap, so
// Go's default of 100 lets a forward pass's dead activations pile up to
// the size of the weights before a collection frees them for reuse: every
// activation of a 512-token DenseRetNet-350M prefill (about 1.5 GB) was
// fresh memory from the kernel, page faults and all. At 25 the
// collector runs every quarter of the weights' size, and the weights,
// which hold no pointers, cost it almost nothing to mark: `densessm bench
// model --arch denseretnet --config bench/configs/denseretnet-350m.json
// --decode 0` went from 5.2-5.4 s to 3.9-4.2 s per prefill on one Zen 4
// core; mamba-130m and the training step did not change.
const gcPercent = 25

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
