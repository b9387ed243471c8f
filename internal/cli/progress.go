package cli

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// progress is a progress bar on stderr (steps or bytes, rate, ETA) for work
// that can take more than a second, drawn only when stderr is a terminal,
// and sent as "progress" events when the command runs under Execute with
// Events. When there is neither, newProgress returns nil, and the methods
// of a nil *progress do nothing, so callers never test for it.
type progress struct {
	bar *progressbar.ProgressBar // nil when stderr is not a terminal
	ev  *progressEvents          // nil without Events
}

// progressEventEvery is the least time between two "progress" events of a
// bar, its first and last excepted.
const progressEventEvery = 100 * time.Millisecond

// progressEvents sends a bar's state as "progress" events, throttled.
type progressEvents struct {
	c    *call
	mu   sync.Mutex
	p    Progress
	last time.Time
}

// isTerminal reports whether w is a terminal (stderr for progress bars,
// stdin for a command that would otherwise wait on the keyboard); tests
// replace it.
var isTerminal = func(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// stderrOf returns the command's stderr to draw a bar on, and whether it
// is a terminal.
func stderrOf(cmd *cobra.Command) (w io.Writer, terminal bool) {
	w = cmd.ErrOrStderr()
	if u, ok := w.(underlying); ok {
		return u.raw(), isTerminal(u.dest())
	}
	return w, isTerminal(w)
}

// newBar returns a progress of bar (nil: none drawn) and of the events of
// the command's call, or nil when there is neither.
func newBar(cmd *cobra.Command, bar *progressbar.ProgressBar, p Progress) *progress {
	c := callOf(cmd.Context())
	if bar == nil && !c.wantsEvents() {
		return nil
	}
	pr := &progress{bar: bar}
	if c.wantsEvents() {
		pr.ev = &progressEvents{c: c, p: p, last: time.Now()}
		c.emit(Event{Kind: EventProgress, Progress: &p})
	}
	return pr
}

// newProgress starts a bar of total units (bytes when bytes is set) named
// desc for the command, or returns nil when total is unknown (not
// positive), or when stderr is not a terminal and the command has no
// Events.
func newProgress(cmd *cobra.Command, total int64, desc string, bytes bool) *progress {
	if total <= 0 {
		return nil
	}
	var bar *progressbar.ProgressBar
	if stderr, terminal := stderrOf(cmd); terminal {
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100 * time.Millisecond),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
		}
		if bytes {
			opts = append(opts, progressbar.OptionShowBytes(true))
		} else {
			opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("steps"))
		}
		bar = progressbar.NewOptions64(total, opts...)
	}
	return newBar(cmd, bar, Progress{Desc: desc, Total: total, Bytes: bytes})
}

// newSpinner starts a spinner with the elapsed time, for work whose size
// is not known as it runs (building a model's weights), or returns nil when
// stderr is not a terminal and the command has no Events (whose
// "progress" events then have a Total of 0).
func newSpinner(cmd *cobra.Command, desc string) *progress {
	var bar *progressbar.ProgressBar
	if stderr, terminal := stderrOf(cmd); terminal {
		bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionClearOnFinish(),
		)
	}
	return newBar(cmd, bar, Progress{Desc: desc})
}

// drawn reports whether the bar is drawn on a terminal.
func (p *progress) drawn() bool { return p != nil && p.bar != nil }

// set moves the bar to done units.
func (p *progress) set(done int64) {
	if p == nil {
		return
	}
	if p.bar != nil {
		p.bar.Set64(done)
	}
	p.ev.update(func(pr *Progress) { pr.Done = done })
}

// add advances the bar by n units.
func (p *progress) add(n int64) {
	if p == nil {
		return
	}
	if p.bar != nil {
		p.bar.Add64(n)
	}
	p.ev.update(func(pr *Progress) { pr.Done += n })
}

// done clears the bar from the terminal and sends its final event.
func (p *progress) done() {
	if p == nil {
		return
	}
	if p.bar != nil {
		p.bar.Finish()
		p.bar.Clear()
	}
	p.ev.finish()
}

// describe replaces the text before the bar (not the events' Desc, which
// keeps naming the work).
func (p *progress) describe(s string) {
	if p != nil && p.bar != nil {
		p.bar.Describe(s)
	}
}

// clear removes the bar from the terminal until it is next drawn, to print
// a line above it.
func (p *progress) clear() {
	if p != nil && p.bar != nil {
		p.bar.Clear()
	}
}

// update changes the state and sends it unless the last event was sent
// less than progressEventEvery ago.
func (e *progressEvents) update(f func(*Progress)) {
	if e == nil {
		return
	}
	e.mu.Lock()
	if e.p.Final {
		e.mu.Unlock()
		return
	}
	f(&e.p)
	now := time.Now()
	if now.Sub(e.last) < progressEventEvery {
		e.mu.Unlock()
		return
	}
	e.last = now
	p := e.p
	e.mu.Unlock()
	e.c.emit(Event{Kind: EventProgress, Progress: &p})
}

// finish sends the final event, once.
func (e *progressEvents) finish() {
	if e == nil {
		return
	}
	e.mu.Lock()
	if e.p.Final {
		e.mu.Unlock()
		return
	}
	e.p.Final = true
	p := e.p
	e.mu.Unlock()
	e.c.emit(Event{Kind: EventProgress, Progress: &p})
}
