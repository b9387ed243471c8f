package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/densessm/densessm/api"
)

// PerplexityResult is the score of a stream.
type PerplexityResult struct {
	// Tokens is the number of tokens predicted: every token but the
	// stream's first in the recurrent mode; in the parallel mode, also
	// not the first token of each window when Stride == Context.
	Tokens int64 `json:"tokens"`
	// NLL is the mean negative log-likelihood, in nats per token (NaN when
	// Tokens is 0).
	NLL float64 `json:"nll"`
	// Perplexity is exp(NLL).
	Perplexity float64 `json:"perplexity"`
	// Bytes is the length of the text the stream encodes, as told by
	// AddBytes (0 when not told).
	Bytes int64 `json:"bytes,omitempty"`
	// BitsPerByte is the total negative log-likelihood in bits over Bytes
	// (0 when Bytes is 0).
	BitsPerByte float64 `json:"bits_per_byte,omitempty"`
}

// Perplexity scores one stream of token ids fed in any number of pieces:
// any split of the stream into Feed calls gives the same result, to the
// bit, in both modes, for a model that gives the same bits for the same
// input (windows sit at fixed places of the stream, and the terms are
// summed in the order of the stream). It holds about two windows of
// tokens and one window's logits. It is not safe for concurrent use.
//
// After an error from Feed or Finish (a cancelled context, a model
// failure) the scorer is spent: every later call returns that error.
// Result stays readable.
type Perplexity struct {
	m       api.Model
	o       PerplexityOptions // with defaults
	vocab   int
	threads int // goroutines of the log-softmax

	state   api.State         // recurrent: the state after the tokens run so far
	initial api.StateSnapshot // recurrent: Options.Initial's contents (Batch 0 without one)
	buf     []int32           // tokens from stream position start on, not yet done with
	start   int64             // stream position of buf[0]
	fed     int64             // tokens fed so far
	done    int64             // recurrent: tokens run through the state; parallel: end of the last window
	next    int64             // parallel: start of the next window
	last    []float32         // recurrent: the logits that predict the token at done
	hasLast bool

	nll      sum
	scored   int64
	bytes    int64
	terms    []float64 // per-row NLLs of a window, reused
	finished bool
	err      error
}

// NewPerplexity returns a scorer of m with options o (validated; zero
// fields take their defaults).
func NewPerplexity(m api.Model, o PerplexityOptions) (*Perplexity, error) {
	if m == nil {
		return nil, fmt.Errorf("perplexity: no model: %w", api.ErrConfig)
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("perplexity: %w", err)
	}
	p := &Perplexity{m: m, o: o.withDefaults(), vocab: m.Config().Vocab()}
	if p.vocab < 1 {
		return nil, fmt.Errorf("perplexity: the model has %d logits per token: %w", p.vocab, api.ErrConfig)
	}
	p.threads = max(m.Info().Threads, 1)
	if p.o.Mode == ModeRecurrent {
		s, err := m.NewState(1)
		if err != nil {
			return nil, fmt.Errorf("perplexity: %w", err)
		}
		p.state = s
		if o.Initial != nil {
			sv, ok := m.(api.StateSaver)
			if !ok || !m.Info().Snapshots {
				return nil, fmt.Errorf("perplexity: a starting state for %s models, which do not save their states: %w", m.Info().Arch, api.ErrUnsupported)
			}
			if p.initial, err = sv.SaveState(context.Background(), o.Initial); err != nil {
				return nil, fmt.Errorf("perplexity: starting state: %w", err)
			}
			if p.initial.Batch != 1 {
				return nil, fmt.Errorf("perplexity: a starting state of %d sequences, want 1: %w", p.initial.Batch, api.ErrShape)
			}
			if err := p.restart(context.Background()); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// ScorePerplexity scores the stream ids with m: NewPerplexity, Feed and
// Finish in one call.
func ScorePerplexity(ctx context.Context, m api.Model, ids []int32, o PerplexityOptions) (PerplexityResult, error) {
	p, err := NewPerplexity(m, o)
	if err != nil {
		return PerplexityResult{}, err
	}
	if err := p.Feed(ctx, ids); err != nil {
		return p.Result(), err
	}
	if err := p.Finish(ctx); err != nil {
		return p.Result(), err
	}
	return p.Result(), nil
}

// AddBytes adds n to the byte length of the text the stream encodes, for
// Result's BitsPerByte; n < 1 is ignored.
func (p *Perplexity) AddBytes(n int64) {
	if n > 0 {
		p.bytes += n
	}
}

// Feed adds ids, the next tokens of the stream, and scores every window
// they complete. Ids outside the model's vocabulary give an error wrapping
// api.ErrOutOfRange and leave the scorer as it was. The context is checked
// before each window.
func (p *Perplexity) Feed(ctx context.Context, ids []int32) error {
	if err := p.usable(); err != nil {
		return err
	}
	for i, id := range ids {
		if id < 0 || int(id) >= p.vocab {
			return fmt.Errorf("perplexity: token %d of the stream: id %d outside the vocabulary [0, %d): %w", p.fed+int64(i), id, p.vocab, api.ErrOutOfRange)
		}
	}
	return p.spend(p.feed(ctx, ids))
}

// feed is Feed past the checks.
func (p *Perplexity) feed(ctx context.Context, ids []int32) (err error) {
	defer api.Recover(&err)
	// Take the ids a window at a time, so that the buffer stays within
	// about two windows whatever len(ids).
	step := p.o.Chunk
	if p.o.Mode == ModeParallel {
		step = p.o.Context
	}
	for len(ids) > 0 {
		n := min(len(ids), step)
		p.buf = append(p.buf, ids[:n]...)
		p.fed += int64(n)
		ids = ids[n:]
		if err := p.runFull(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Finish scores the tokens still held: the last, shorter window. The
// stream ends there; Feed refuses more. A stream in which no token was
// predicted (fewer than two tokens) is an error wrapping
// api.ErrOutOfRange.
func (p *Perplexity) Finish(ctx context.Context) error {
	if err := p.usable(); err != nil {
		return err
	}
	p.finished = true
	if err := p.spend(p.finish(ctx)); err != nil {
		return err
	}
	if p.scored == 0 {
		return fmt.Errorf("perplexity: a stream of %d tokens: at least 2 are needed to predict one: %w", p.fed, api.ErrOutOfRange)
	}
	return nil
}

// finish is Finish past the checks.
func (p *Perplexity) finish(ctx context.Context) (err error) {
	defer api.Recover(&err)
	if p.o.Mode == ModeParallel {
		if p.fed > p.done {
			err = p.window(ctx, p.next, p.fed)
		}
	} else if p.fed > p.done {
		// The last token's logits would predict nothing: it is not run.
		err = p.chunk(ctx, int(p.fed-p.done-1))
	}
	if err != nil {
		return err
	}
	p.progress(p.fed)
	return nil
}

// spend keeps err, when not nil, as the reason the scorer takes no more
// calls, and returns it.
func (p *Perplexity) spend(err error) error {
	if err != nil {
		p.err = err
	}
	return err
}

// Result returns the score of the tokens predicted so far: the whole
// stream's after Finish.
func (p *Perplexity) Result() PerplexityResult {
	r := PerplexityResult{Tokens: p.scored, NLL: math.NaN(), Perplexity: math.NaN(), Bytes: p.bytes}
	total := p.nll.value()
	if p.scored > 0 {
		r.NLL = total / float64(p.scored)
		r.Perplexity = math.Exp(r.NLL)
	}
	if p.bytes > 0 {
		r.BitsPerByte = total / (float64(p.bytes) * math.Ln2)
	}
	return r
}

// usable reports why the scorer takes no more calls.
func (p *Perplexity) usable() error {
	switch {
	case p.err != nil:
		return fmt.Errorf("perplexity: an earlier call failed: %w", p.err)
	case p.finished:
		return errors.New("perplexity: the stream was already finished")
	}
	return nil
}

// runFull scores every window the tokens held complete.
func (p *Perplexity) runFull(ctx context.Context) error {
	if p.o.Mode == ModeParallel {
		for p.next+int64(p.o.Context) <= p.fed {
			if err := p.window(ctx, p.next, p.next+int64(p.o.Context)); err != nil {
				return err
			}
		}
		return nil
	}
	for p.fed-p.done >= int64(p.o.Chunk) {
		if err := p.chunk(ctx, p.o.Chunk); err != nil {
			return err
		}
	}
	return nil
}

// window runs the parallel mode's window [begin, end) from an empty state
// and scores the tokens no earlier window scored, each but the window's
// first. The window's last token predicts nothing and is not run.
func (p *Perplexity) window(ctx context.Context, begin, end int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("perplexity: %w", err)
	}
	from := max(p.done, begin+1)
	if from < end {
		in := p.buf[begin-p.start : end-1-p.start]
		t, err := p.m.Forward(ctx, [][]int32{in}, api.Form{})
		if err != nil {
			return fmt.Errorf("perplexity: window at token %d: %w", begin, err)
		}
		logits, err := hostLogits(t, len(in), p.vocab)
		if err != nil {
			return fmt.Errorf("perplexity: window at token %d: %w", begin, err)
		}
		lo := int(from - 1 - begin) // the row that predicts token from
		p.score(logits[lo*p.vocab:], p.buf[from-p.start:end-p.start])
	}
	p.done = end
	p.next = begin + int64(p.o.Stride)
	p.drop(p.next)
	p.progress(p.done)
	return nil
}

// chunk prefills the next n tokens held into the recurrent state and
// scores the tokens they predict that are held, and the first of them
// with the logits kept from the chunk before. The logits of the chunk's
// last token are kept when the token they predict is not held yet. With
// DocResets the chunk is cut after each separator, and the state emptied
// there.
func (p *Perplexity) chunk(ctx context.Context, n int) error {
	for {
		k, reset := n, false
		if p.o.DocResets {
			at := int(p.done - p.start)
			if i := slices.Index(p.buf[at:at+n], p.o.Separator); i >= 0 {
				k, reset = i+1, true
			}
		}
		if err := p.segment(ctx, k); err != nil {
			return err
		}
		if reset {
			if err := p.restart(ctx); err != nil {
				return err
			}
		}
		if n -= k; n == 0 {
			return nil
		}
	}
}

// restart sets the state to the starting state: Options.Initial's, or an
// empty one.
func (p *Perplexity) restart(ctx context.Context) error {
	var err error
	if p.initial.Batch == 0 {
		err = p.state.Reset()
	} else {
		err = p.m.(api.StateSaver).LoadState(ctx, p.state, p.initial)
	}
	if err != nil {
		return fmt.Errorf("perplexity: %w", err)
	}
	return nil
}

// segment is chunk of n tokens without a separator before the last.
func (p *Perplexity) segment(ctx context.Context, n int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("perplexity: %w", err)
	}
	at := int(p.done - p.start)
	if p.hasLast && at < len(p.buf) {
		p.score(p.last, p.buf[at:at+1])
		p.hasLast = false
	}
	if n > 0 {
		in := p.buf[at : at+n]
		t, err := p.m.Prefill(ctx, p.state, [][]int32{in}, api.Form{Mode: api.Chunkwise})
		if err != nil {
			return fmt.Errorf("perplexity: chunk at token %d: %w", p.done, err)
		}
		logits, err := hostLogits(t, n, p.vocab)
		if err != nil {
			return fmt.Errorf("perplexity: chunk at token %d: %w", p.done, err)
		}
		targets := p.buf[at+1 : min(at+n+1, len(p.buf))]
		p.score(logits, targets)
		if len(targets) < n {
			p.last = append(p.last[:0], logits[(n-1)*p.vocab:n*p.vocab]...)
			p.hasLast = true
		}
		p.done += int64(n)
	}
	p.drop(p.done)
	p.progress(p.done)
	return nil
}

// score adds the NLLs of targets, predicted by the consecutive rows of
// logits, in order.
func (p *Perplexity) score(logits []float32, targets []int32) {
	if len(targets) == 0 {
		return
	}
	if cap(p.terms) < len(targets) {
		p.terms = make([]float64, len(targets))
	}
	p.terms = p.terms[:len(targets)]
	rowsNLL(logits, p.vocab, targets, p.terms, p.threads)
	for _, x := range p.terms {
		p.nll.add(x)
	}
	p.scored += int64(len(targets))
}

// drop forgets the tokens before stream position pos, moving the rest to
// the front of the buffer.
func (p *Perplexity) drop(pos int64) {
	k := min(pos-p.start, int64(len(p.buf)))
	if k <= 0 {
		return
	}
	p.buf = p.buf[:copy(p.buf, p.buf[k:])]
	p.start = pos
}

// progress reports tokens to the hook, if any.
func (p *Perplexity) progress(tokens int64) {
	if p.o.Progress != nil {
		p.o.Progress(tokens)
	}
}
