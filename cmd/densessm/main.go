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
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"

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

// Exit statuses of an interrupted command, as a shell reports a process
// killed by SIGINT or SIGTERM (128 + the signal number).
const (
	exitInterrupted = 130
	exitTerminated  = 143
)

// interruptGrace is how long run waits, after SIGINT or SIGTERM has
// cancelled the command's context, for the command to return by itself
// before it removes the temporary files of writes in progress and returns
// anyway: every command stops within a second of a signal, whether or not
// the work it was doing checks its context.
const interruptGrace = 500 * time.Millisecond

// graceExtension, when a command has set it with extendInterruptGrace, is
// how long run waits instead of interruptGrace: train needs the time to
// save a checkpoint of its last step.
var graceExtension atomic.Int64

// extendInterruptGrace lets the running command take up to d to return
// after SIGINT or SIGTERM, for work that saves what it has done.
func extendInterruptGrace(d time.Duration) { graceExtension.Store(int64(d)) }

// run executes the command line and returns the process exit status. Errors,
// and panics turned into errors, are printed as one line on stderr. SIGINT
// and SIGTERM cancel the command's context; the command then stops, its
// partial outputs are removed, "densessm: interrupted" is printed and the
// status is 130 (SIGINT) or 143 (SIGTERM).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer stopPlugins()
	done := make(chan error, 1)
	go func() {
		done <- func() (err error) {
			defer api.Recover(&err)
			cmd := newRootCmd(stdout, stderr)
			cmd.SetIn(stdin)
			cmd.SetArgs(args)
			return cmd.ExecuteContext(ctx)
		}()
	}()
	var err error
	select {
	case err = <-done:
	case sig := <-signals:
		cancel()
		select {
		case <-done:
		case <-signals: // a second signal: stop now
		case <-time.After(max(interruptGrace, time.Duration(graceExtension.Load()))):
		}
		atomicfile.RemoveTemps()
		stopPlugins()
		fmt.Fprintln(stderr, "densessm: interrupted")
		if sig == syscall.SIGTERM {
			return exitTerminated
		}
		return exitInterrupted
	}
	if err != nil {
		fmt.Fprintf(stderr, "densessm: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

// oneLine folds a message onto one line, so that an error quoting a file's
// contents cannot print lines of its own.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
