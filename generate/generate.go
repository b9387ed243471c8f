package generate

import (
	"context"
	"fmt"
	"iter"
	"runtime/debug"
	"slices"

	"github.com/densessm/densessm/api"
)

// maxPrefillWindow is the most prompt tokens one Prefill call takes;
// Prefill continues the state exactly, so a long prompt goes through in
// windows and only one window's activations and logits are held at a
// time (see PrefillLast).
const maxPrefillWindow = 512

// maxPrefillLogits bounds the logits of one prefill window, B·T·V values
// (256 MiB of float32): a large batch or vocabulary gets shorter windows.
const maxPrefillLogits = 1 << 26

// Generate decodes up to o.MaxTokens new tokens after each of prompts (a
// batch; each prompt non-empty, their lengths may differ) and returns them
// per prompt, without the prompt and without the end-of-sequence token.
//
// Without padding, which a state-space model cannot mask: the first L0
// tokens of every prompt, L0 being the shortest prompt's length, go through
// one batched Prefill (in windows of at most 512 tokens, computing only
// the last position's logits: see PrefillLast); then the batch
// advances in lockstep with Step, a sequence still inside its prompt
// feeding its next prompt token and one past it feeding the token it last
// sampled. A sequence ends at one of o.EOS or after o.MaxTokens tokens; one
// that has ended feeds a dummy token while the others finish (its output no
// longer changes), and decoding stops when every sequence has ended. Each
// sequence has its own Sampler seeded with o.Seed, so a batch gives what
// one call per prompt gives, up to the rounding differences between the
// model's batched, prefill and step forms.
//
// yield, when not nil, gets each token as it is decoded (seq indexes
// prompts; within a step, sequences come in order). If it returns false,
// decoding stops and Generate returns what was decoded so far, with a nil
// error.
//
// ctx is checked before every model call; on cancellation Generate returns
// what was decoded so far and an error wrapping ctx.Err(). Bad prompts
// (empty, ids outside the vocabulary: api.ErrOutOfRange) and bad options
// (api.ErrConfig) are reported before the model runs.
func Generate(ctx context.Context, m api.Model, prompts [][]int32, o Options, yield func(seq int, tok int32) bool) (out [][]int32, err error) {
	defer api.Recover(&err)
	onToken := func(seq int, tok int32) (verdict, error) {
		if yield != nil && !yield(seq, tok) {
			return endAll, nil
		}
		return goOn, nil
	}
	out, err = run(ctx, m, prompts, o, onToken, nil)
	if err != nil {
		return out, fmt.Errorf("generate: %w", err)
	}
	return out, nil
}

// Tokens decodes up to o.MaxTokens tokens after prompt and yields each as it
// is decoded, with a nil error. An error (bad options or prompt, a model
// failure, ctx cancelled) is yielded once as (0, err) and ends the
// sequence. Breaking out of the loop stops decoding. The end-of-sequence
// token is not yielded.
func Tokens(ctx context.Context, m api.Model, prompt []int32, o Options) iter.Seq2[int32, error] {
	return func(yield func(int32, error) bool) {
		inBody, stopped := false, false
		onToken := func(_ int, tok int32) (verdict, error) {
			inBody = true
			ok := yield(tok, nil)
			inBody = false
			if !ok {
				stopped = true
				return endAll, nil
			}
			return goOn, nil
		}
		err := func() (err error) {
			defer func() {
				if inBody {
					return // a panic of the loop body goes on to its caller
				}
				if r := recover(); r != nil {
					err = panicError(r)
				}
			}()
			_, err = run(ctx, m, [][]int32{prompt}, o, onToken, nil)
			return err
		}()
		if err != nil && !stopped {
			yield(0, fmt.Errorf("generate: %w", err))
		}
	}
}

// panicError turns a recovered value into an error as api.Recover does.
func panicError(r any) error {
	if err, ok := r.(error); ok {
		if _, rt := r.(interface{ RuntimeError() }); !rt {
			return err
		}
	}
	return &api.PanicError{Value: r, Stack: debug.Stack()}
}

// verdict is what the caller of run decides after each token.
type verdict int

const (
	goOn   verdict = iota // the sequence goes on
	endSeq                // the sequence ends after this token
	endAll                // decoding stops
)

// prefillPrompts returns the state the prompts' first L0 tokens leave
// (o.State, a new one, or one from o.Cache) and the logits [B,V] after
// them.
func prefillPrompts(ctx context.Context, m api.Model, prompts [][]int32, L0 int, o Options) (api.State, api.Tensor, error) {
	B := len(prompts)
	switch {
	case o.Cache != nil && o.State != nil:
		return nil, nil, fmt.Errorf("a prefix cache and a given state: %w", api.ErrConfig)
	case o.Cache != nil && B != 1:
		return nil, nil, fmt.Errorf("a prefix cache serves one prompt, not %d: %w", B, api.ErrConfig)
	case o.Cache != nil:
		if o.Cache.m != m {
			return nil, nil, fmt.Errorf("a prefix cache of another model: %w", api.ErrConfig)
		}
		return o.Cache.prefill(ctx, prompts[0])
	case o.State != nil && (B != 1 || o.State.Batch() != 1):
		return nil, nil, fmt.Errorf("a given state continues one prompt, not %d, with a state of %d: %w", B, o.State.Batch(), api.ErrConfig)
	}
	st := o.State
	if st == nil {
		var err error
		if st, err = m.NewState(B); err != nil {
			return nil, nil, fmt.Errorf("new state for %d sequences: %w", B, err)
		}
	}
	t, err := prefillLast(ctx, m, st, prompts, L0)
	if err != nil {
		if o.State == nil {
			st.Close()
		}
		return nil, nil, err
	}
	return st, t, nil
}

// run is the decoding loop of Generate. onToken gets each token kept in a
// sequence; onEnd (optional) is called when a sequence ends at an
// end-of-sequence token or at o.MaxTokens, not when onToken ended it. An
// error from either stops decoding and is returned as it is.
func run(ctx context.Context, m api.Model, prompts [][]int32, o Options,
	onToken func(seq int, tok int32) (verdict, error), onEnd func(seq int) error) ([][]int32, error) {
	if m == nil {
		return nil, fmt.Errorf("no model: %w", api.ErrConfig)
	}
	V := m.Config().Vocab()
	if err := o.checkVocab(V); err != nil {
		return nil, err
	}
	B := len(prompts)
	out := make([][]int32, B)
	if B == 0 {
		return out, nil
	}
	L0 := len(prompts[0])
	for b, p := range prompts {
		if len(p) == 0 {
			return nil, fmt.Errorf("prompt %d is empty: want at least one token: %w", b, api.ErrConfig)
		}
		for i, id := range p {
			if id < 0 || int(id) >= V {
				return nil, fmt.Errorf("prompt %d: id %d at position %d: the model has %d tokens: %w", b, id, i, V, api.ErrOutOfRange)
			}
		}
		L0 = min(L0, len(p))
	}
	scr := newScratch(V)
	samplers := make([]*Sampler, B)
	for b := range samplers {
		s, err := newSampler(o, V, scr)
		if err != nil {
			return nil, err
		}
		if err := s.Observe(prompts[b]...); err != nil {
			return nil, err
		}
		samplers[b] = s
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	// Prefill the common length: only the last position's logits are
	// needed.
	st, t, err := prefillPrompts(ctx, m, prompts, L0, o)
	if err != nil {
		return out, err
	}
	if o.State == nil {
		defer st.Close()
	}
	var rows logitRows
	logits, err := rows.copied(t, B, V) // [B*V]: the rows to sample from
	if err != nil {
		return out, fmt.Errorf("prefill: %w", err)
	}
	t.Backend().Free(t)

	// Step in lockstep. fed counts the tokens each sequence has consumed
	// (the same for all); logits are those after the last one.
	fed := L0
	active, left := make([]bool, B), B
	for b := range active {
		active[b] = true
	}
	next := make([]int32, B)
	unfed := int32(-1) // with o.State: a token sampled and not yet fed to it
	end := func(b int) {
		active[b] = false
		left--
	}
	finish := func() ([][]int32, error) {
		if o.State == nil || unfed < 0 {
			return out, nil
		}
		if _, err := m.Step(ctx, st, []int32{unfed}); err != nil {
			return out, fmt.Errorf("the last token into the state: %w", err)
		}
		return out, nil
	}
	for {
		for b := range B {
			if !active[b] {
				next[b] = 0 // a dummy token: the sequence has ended
				continue
			}
			if fed < len(prompts[b]) {
				next[b] = prompts[b][fed]
				continue
			}
			tok, err := samplers[b].Sample(logits[b*V : (b+1)*V])
			if err != nil {
				return out, fmt.Errorf("sequence %d, token %d: %w", b, len(out[b]), err)
			}
			unfed = tok
			if slices.Contains(o.EOS, tok) {
				end(b)
				if onEnd != nil {
					if err := onEnd(b); err != nil {
						return out, err
					}
				}
				continue
			}
			out[b] = append(out[b], tok)
			_ = samplers[b].Observe(tok) // tok < V: it cannot fail
			v, err := onToken(b, tok)
			if err != nil {
				return out, err
			}
			if v == endAll {
				return finish()
			}
			if v == endSeq || len(out[b]) >= o.MaxTokens {
				end(b)
				if v == goOn && onEnd != nil {
					if err := onEnd(b); err != nil {
						return out, err
					}
				}
				continue
			}
			next[b] = tok
		}
		if left == 0 {
			return finish()
		}
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("step %d: %w", fed-L0+1, err)
		}
		t, err := m.Step(ctx, st, next)
		if err != nil {
			return out, fmt.Errorf("step %d: %w", fed-L0+1, err)
		}
		unfed = -1
		fed++
		if logits, err = rows.step(t, B, V); err != nil {
			return out, fmt.Errorf("step %d: %w", fed-L0, err)
		}
	}
}
