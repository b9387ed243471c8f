// Package cli is the densessm command line: its command tree (cobra), run
// either as the process's entry point by Main, with signal handling and
// exit statuses, or in-process by Execute, for another Go package (the
// Python binding) that runs a command with a context and progress events.
//
// Importing cli registers the built-in backends and architectures (see
// register.go), as the densessm command has them.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/atomicfile"
)

// GCPercent is the garbage collector's GOGC for the command, unless the
// environment sets GOGC (cmd/densessm sets it with debug.SetGCPercent). A
// model's weights are most of the live heap, so Go's default of 100 lets a
// forward pass's dead activations pile up to the size of the weights
// before a collection frees them for reuse: every activation of a
// 512-token DenseRetNet-350M prefill (about 1.5 GB) was fresh memory from
// the kernel, page faults and all. At 25 the collector runs every quarter
// of the weights' size, and the weights, which hold no pointers, cost it
// almost nothing to mark: `densessm bench model --arch denseretnet
// --config bench/configs/denseretnet-350m.json --decode 0` went from
// 5.2-5.4 s to 3.9-4.2 s per prefill on one Zen 4 core; mamba-130m and the
// training step did not change.
const GCPercent = 25

// Exit statuses of an interrupted command, as a shell reports a process
// killed by SIGINT or SIGTERM (128 + the signal number).
const (
	exitInterrupted = 130
	exitTerminated  = 143
)

// interruptGrace is how long Main waits, after SIGINT or SIGTERM has
// cancelled the command's context, for the command to return by itself
// before it removes the temporary files of writes in progress and returns
// anyway: every command stops within a second of a signal, whether or not
// the work it was doing checks its context.
const interruptGrace = 500 * time.Millisecond

// Main executes the command line and returns the process exit status; it
// is the densessm command's main. Errors, and panics turned into errors,
// are printed as one line on stderr. SIGINT and SIGTERM cancel the
// command's context; the command then stops, its partial outputs are
// removed, "densessm: interrupted" is printed and the status is 130
// (SIGINT) or 143 (SIGTERM).
//
// Main is meant to run once per process, as its command: it handles the
// process's SIGINT and SIGTERM while it runs, and on a signal it returns
// without waiting more than the grace period for the command, removes the
// temporary files of every write in progress in the process and stops
// every plugin process. To run a command in a process that does other
// things, use Execute.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return mainContext(context.Background(), args, stdin, stdout, stderr)
}

// mainContext is Main with the command's context made from parent
// (MainDataParallel's carries the process group).
func mainContext(parent context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	c := &call{}
	ctx = withCall(ctx, c)
	defer beginPlugins(stderr)()
	done := make(chan error, 1)
	go func() {
		done <- func() (err error) {
			defer api.Recover(&err)
			return execute(ctx, args, stdin, stdout, stderr)
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
		case <-time.After(max(interruptGrace, c.grace())):
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

// execute runs the command line args with ctx on a new command tree.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if args == nil {
		args = []string{} // cobra reads os.Args for nil
	}
	cmd := newRootCmd(stdout, stderr)
	cmd.SetIn(stdin)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// oneLine folds a message onto one line, so that an error quoting a file's
// contents cannot print lines of its own.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
