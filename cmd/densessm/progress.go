package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress is a progress bar on stderr (steps or bytes, rate, ETA) for work
// that can take more than a second. It is drawn only when stderr is a
// terminal; otherwise newProgress returns nil, and the methods of a nil
// *progress do nothing, so callers never test for it.
type progress struct {
	bar *progressbar.ProgressBar
}

// isTerminal reports whether w is a terminal (stderr for progress bars,
// stdin for a command that would otherwise wait on the keyboard); tests
// replace it.
var isTerminal = func(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newProgress starts a bar of total units (bytes when bytes is set) named
// desc, or returns nil when stderr is not a terminal or total is unknown
// (not positive).
func newProgress(stderr io.Writer, total int64, desc string, bytes bool) *progress {
	if total <= 0 || !isTerminal(stderr) {
		return nil
	}
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
	return &progress{bar: progressbar.NewOptions64(total, opts...)}
}

// newSpinner starts a spinner with the elapsed time, for work whose size
// is not known as it runs (building a model's weights), or returns nil when
// stderr is not a terminal.
func newSpinner(stderr io.Writer, desc string) *progress {
	if !isTerminal(stderr) {
		return nil
	}
	return &progress{bar: progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionClearOnFinish(),
	)}
}

// set moves the bar to done units.
func (p *progress) set(done int64) {
	if p != nil {
		p.bar.Set64(done)
	}
}

// add advances the bar by n units.
func (p *progress) add(n int64) {
	if p != nil {
		p.bar.Add64(n)
	}
}

// done clears the bar from the terminal.
func (p *progress) done() {
	if p != nil {
		p.bar.Finish()
		p.bar.Clear()
	}
}

// describe replaces the text before the bar.
func (p *progress) describe(s string) {
	if p != nil {
		p.bar.Describe(s)
	}
}
