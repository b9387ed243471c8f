package cli

import (
	"bytes"
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/densessm/densessm/api"
)

// Options are the input, outputs and progress events of a command run by
// Execute.
type Options struct {
	// Stdin is the command's standard input (nil: empty).
	Stdin io.Reader
	// Stdout and Stderr receive what the command prints (nil: discarded).
	// Execute serializes its writes to Stderr, which can also come from a
	// plugin's process (its log), so Stderr need not be safe for
	// concurrent use; Stdout is written by the command's goroutine only.
	Stdout, Stderr io.Writer
	// Events, when not nil, receives the command's progress events (see
	// Event). It is called synchronously, from the goroutine doing the
	// work (the command's), and never concurrently with itself within one
	// Execute call; the command waits while it runs. A panic in it is
	// returned by Execute as an error.
	Events func(Event)
}

// Execute runs the command line args (without the program name, as
// os.Args[1:]) in this process, exactly as the densessm command would, and
// returns the command's error unchanged: it prints nothing of it, and
// panics are recovered into errors (api.Recover). Cancelling ctx stops
// the command as SIGINT stops the densessm command: train saves a
// checkpoint of its last completed step and returns a *train.Interrupted
// (whose Unwrap gives ctx's error), other commands return an error
// (usually wrapping ctx's error), and a file being written keeps its
// previous contents (its temporary file is removed). Execute
// installs no signal handler, never exits the process, and returns only
// once the command has returned (every long loop checks ctx, so that is
// promptly; one piece of work under way, such as a forward pass or the
// checkpoint train saves, finishes first).
//
// Execute may be called many times in one process, and from several
// goroutines at once; each call has its own command tree, flags, outputs
// and events. What is shared by the process:
//   - The plugins are discovered once per process, by the first call that
//     needs them (a discovery cut short by its call's cancelled context is
//     done again by the next), and their architectures and backends stay
//     registered in package api. Their processes are started on demand
//     and stopped when the last running Main or Execute call returns, so
//     that none outlives the calls that use it; a plugin's log goes to the
//     Stderr of the most recently started call still running.
//   - bench with --threads sets GOMAXPROCS for the process while it runs.
//   - The built-in backends and architectures, registered at init.
//
// On return no goroutine or plugin process started for the call is left
// running, except plugin processes still used by other calls running at
// the same time.
func Execute(ctx context.Context, args []string, opts Options) (err error) {
	defer api.Recover(&err)
	stdin, stdout, stderr := opts.Stdin, opts.Stdout, opts.Stderr
	if stdin == nil {
		stdin = bytes.NewReader(nil)
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	c := &call{events: opts.Events}
	locked := &lockedWriter{w: stderr}
	var cmdStderr io.Writer = locked
	if c.events != nil {
		lines := &lineEvents{out: locked, c: c}
		defer lines.flush()
		cmdStderr = lines
	}
	defer beginPlugins(locked)()
	return execute(withCall(ctx, c), args, stdin, stdout, cmdStderr)
}

// call is the state of one Main or Execute call, carried by its command's
// context.
type call struct {
	graceNS atomic.Int64 // set by extendInterruptGrace
	events  func(Event)  // nil: none
	mu      sync.Mutex   // serializes events
}

type callKey struct{}

// withCall returns ctx carrying c.
func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// callOf returns the call ctx carries, or nil.
func callOf(ctx context.Context) *call {
	if ctx == nil {
		return nil
	}
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// emit delivers e to the call's Events, if any.
func (c *call) emit(e Event) {
	if c == nil || c.events == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events(e)
}

// wantsEvents reports whether the call has an Events func.
func (c *call) wantsEvents() bool { return c != nil && c.events != nil }

// grace returns how long the call's command asked to be given to return
// after an interrupt (0: the default).
func (c *call) grace() time.Duration { return time.Duration(c.graceNS.Load()) }

// extendInterruptGrace lets the command running with ctx take up to d to
// return after SIGINT or SIGTERM (in Main), for work that saves what it
// has done.
func extendInterruptGrace(ctx context.Context, d time.Duration) {
	if c := callOf(ctx); c != nil {
		c.graceNS.Store(int64(d))
	}
}

// emitEvent delivers e to the Events of the call ctx carries, if any.
func emitEvent(ctx context.Context, e Event) { callOf(ctx).emit(e) }

// underlying is implemented by the writers Execute wraps stderr in: it
// returns the writer to draw progress bars on (no log events) and the
// caller's writer, to ask whether it is a terminal.
type underlying interface {
	raw() io.Writer
	dest() io.Writer
}

// lockedWriter serializes the writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) raw() io.Writer  { return l }
func (l *lockedWriter) dest() io.Writer { return l.w }

// lineEvents writes to out and sends each complete line written as a
// "log" event.
type lineEvents struct {
	out     *lockedWriter
	c       *call
	mu      sync.Mutex
	pending []byte
}

func (l *lineEvents) Write(p []byte) (int, error) {
	n, err := l.out.Write(p)
	l.mu.Lock()
	l.pending = append(l.pending, p[:n]...)
	var lines []string
	for {
		i := bytes.IndexByte(l.pending, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, string(bytes.TrimSuffix(l.pending[:i], []byte("\r"))))
		l.pending = l.pending[i+1:]
	}
	l.mu.Unlock()
	for _, s := range lines {
		l.c.emit(Event{Kind: EventLog, Line: s})
	}
	return n, err
}

// flush sends the last line if it had no newline.
func (l *lineEvents) flush() {
	l.mu.Lock()
	s := string(l.pending)
	l.pending = nil
	l.mu.Unlock()
	if s != "" {
		l.c.emit(Event{Kind: EventLog, Line: s})
	}
}

func (l *lineEvents) raw() io.Writer  { return l.out }
func (l *lineEvents) dest() io.Writer { return l.out.w }
