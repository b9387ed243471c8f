package eval

import (
	"fmt"

	"github.com/densessm/densessm/api"
)

// The perplexity modes.
const (
	// ModeRecurrent carries one state across the whole stream.
	ModeRecurrent = "recurrent"
	// ModeParallel is Hugging Face's sliding window, each window run from
	// an empty state.
	ModeParallel = "parallel"
)

// Defaults and bounds of PerplexityOptions.
const (
	DefaultContext = 1024 // tokens per window of the parallel mode
	DefaultChunk   = 512  // tokens per prefill of the recurrent mode
	// MaxWindow bounds Context and Chunk: a window's logits are
	// MaxWindow × vocabulary floats, far past any memory at that size.
	MaxWindow = 1 << 24
)

// PerplexityOptions configures a perplexity run. The zero value is the
// recurrent mode with its default chunk.
type PerplexityOptions struct {
	// Mode is ModeRecurrent (the default, also for "") or ModeParallel.
	Mode string
	// Context is the parallel mode's window, in tokens (Hugging Face's
	// max_length); 0 means DefaultContext. It must be at least 2, so that
	// a window predicts a token.
	Context int
	// Stride is how far the parallel mode's window moves, in tokens; 0
	// means Context/2 (at least 1), the 512 of Hugging Face's example with
	// its max_length of 1024. It must not exceed Context. With Stride ==
	// Context the windows are disjoint and, as in Hugging Face's script,
	// the first token of each window has no context and is not scored.
	Stride int
	// Chunk is how many tokens the recurrent mode prefills at a time; 0
	// means DefaultChunk. It changes the memory and the speed, not what is
	// computed: each token is predicted from its whole history whatever
	// the chunk (the float rounding may differ in the last bits).
	Chunk int
	// DocResets empties the recurrent state after each Separator token, so
	// that every document is scored from an empty state, as a model
	// trained with document resets saw it (the token after a separator is
	// still predicted, from the logits of the separator). The recurrent
	// mode only.
	DocResets bool
	Separator int32
	// Initial, when not nil, is a one-sequence state of the model that the
	// recurrent mode starts from (a tuned state, or a prompt's), and
	// returns to after each separator with DocResets; the model must save
	// its states (api.StateSaver). The state itself is not changed.
	Initial api.State
	// Progress, when not nil, is called after each window with the number
	// of stream tokens the scorer is done with so far; it reaches the
	// length of the stream when Finish returns. It runs on the caller's
	// goroutine and must return quickly.
	Progress func(tokens int64)
}

// Validate reports options outside their domain, naming the command-line
// flag (--mode, --context, --stride, --chunk), wrapping api.ErrConfig.
// Context and Stride are checked in the parallel mode only, Chunk in the
// recurrent mode only.
func (o PerplexityOptions) Validate() error {
	switch o.Mode {
	case "", ModeRecurrent:
		if o.Chunk < 0 || o.Chunk > MaxWindow {
			return fmt.Errorf("--chunk %d: want 1 to %d tokens (0: %d): %w", o.Chunk, MaxWindow, DefaultChunk, api.ErrConfig)
		}
	case ModeParallel:
		if o.Initial != nil {
			return fmt.Errorf("--state with --mode parallel: a starting state applies to the recurrent mode only: %w", api.ErrConfig)
		}
		if o.DocResets {
			return fmt.Errorf("--doc-resets with --mode parallel: document resets apply to the recurrent mode only: %w", api.ErrConfig)
		}
		if o.Context != 0 && (o.Context < 2 || o.Context > MaxWindow) {
			return fmt.Errorf("--context %d: want 2 to %d tokens (0: %d): %w", o.Context, MaxWindow, DefaultContext, api.ErrConfig)
		}
		c := o.withDefaults().Context
		if o.Stride < 0 || o.Stride > c {
			return fmt.Errorf("--stride %d: want 1 to the context, %d tokens (0: half the context): %w", o.Stride, c, api.ErrConfig)
		}
	default:
		return fmt.Errorf("--mode %q: want %s or %s: %w", o.Mode, ModeRecurrent, ModeParallel, api.ErrConfig)
	}
	return nil
}

// withDefaults returns o with every zero field set to its default.
func (o PerplexityOptions) withDefaults() PerplexityOptions {
	if o.Mode == "" {
		o.Mode = ModeRecurrent
	}
	if o.Context == 0 {
		o.Context = DefaultContext
	}
	if o.Stride == 0 {
		o.Stride = max(1, o.Context/2)
	}
	if o.Chunk == 0 {
		o.Chunk = DefaultChunk
	}
	return o
}
