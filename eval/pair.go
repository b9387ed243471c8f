package eval

import (
	"context"
	"fmt"
	"math"
	"strings"
	"unicode"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/tokenizer"
)

// EncodePair encodes a context and its continuation for LogLikelihood as
// lm-evaluation-harness 0.4 does (TemplateLM.loglikelihood and
// _encode_pair), with tok's pipeline and without the post-processor's
// special tokens:
//
//   - the white space at the end of the context (Python's str.isspace)
//     moves to the front of the continuation;
//   - the context's ids are encode(context), the continuation's are
//     encode(context + continuation) past as many ids, so that the ids
//     are those of the whole text;
//   - an empty context is the tokenizer's EOS id (its BOS id when it has
//     no EOS; an error wrapping api.ErrNotFound when it has neither), and
//     the continuation's ids are encode(continuation). A context of white
//     space only, empty once its white space has moved, is treated the
//     same way (lm-evaluation-harness would score it with no context at
//     all).
//
// Where the tokenizer merges the end of the context with the start of the
// continuation, the whole text's ids do not begin with the context's; the
// context's ids are then cut back to those the whole text shares, and the
// continuation's start there (lm-evaluation-harness would cut the whole
// text at the context's length regardless). A continuation that adds no
// ids is an error wrapping api.ErrOutOfRange.
func EncodePair(tok *tokenizer.Tokenizer, context, continuation string) (ctxIDs, contIDs []int32, err error) {
	pe, err := newPairEncoder(tok, context)
	if err != nil {
		return nil, nil, err
	}
	return pe.encode(continuation)
}

// pairEncoder encodes the continuations of one context.
type pairEncoder struct {
	tok    *tokenizer.Tokenizer
	head   string  // the context without its trailing white space
	moved  string  // the trailing white space, which goes to the continuation
	ctxIDs []int32 // the context's ids
	prefix bool    // ctxIDs is the EOS (or BOS) id, not the head's ids
}

// newPairEncoder encodes context.
func newPairEncoder(tok *tokenizer.Tokenizer, context string) (*pairEncoder, error) {
	if tok == nil {
		return nil, fmt.Errorf("encode: no tokenizer: %w", api.ErrConfig)
	}
	head := strings.TrimRightFunc(context, pySpace)
	pe := &pairEncoder{tok: tok, head: head, moved: context[len(head):]}
	if head != "" {
		ids, err := encodePlain(tok, head)
		if err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
		pe.ctxIDs = ids
	}
	if len(pe.ctxIDs) == 0 {
		start, err := startID(tok)
		if err != nil {
			return nil, err
		}
		pe.ctxIDs, pe.prefix = start, true
	}
	return pe, nil
}

// encode returns the ids of the context and those of continuation after
// it (see encodeAll). The context's ids are shared between calls: callers
// must not change them.
func (pe *pairEncoder) encode(continuation string) (ctxIDs, contIDs []int32, err error) {
	ctxIDs, conts, err := pe.encodeAll([]string{continuation})
	if err != nil {
		return nil, nil, err
	}
	return ctxIDs, conts[0], nil
}

// encodeAll returns the ids of the context and, for each continuation,
// the ids that follow them in the encoding of the whole text. Where the
// tokenizer merges the end of the context with the start of a
// continuation (a Go context ending in "}" and the choice "()" may encode
// to one "}()" token), the whole text's ids do not begin with the
// context's: the context is then cut back to the ids every whole text
// shares with it, and each continuation's ids start there, so that every
// choice is scored over the same text after the same ids, in the
// tokenization the model was trained on. lm-evaluation-harness would take
// whole[len(context ids):] regardless, which mis-aligns such choices. The
// context's ids are shared: callers must not change them.
func (pe *pairEncoder) encodeAll(continuations []string) (ctxIDs []int32, contIDs [][]int32, err error) {
	wholes := make([][]int32, len(continuations))
	shared := len(pe.ctxIDs)
	for i, c := range continuations {
		if wholes[i], err = encodePlain(pe.tok, pe.head+pe.moved+c); err != nil {
			return nil, nil, fmt.Errorf("continuation %d: %w", i, err)
		}
		if !pe.prefix {
			shared = min(shared, commonPrefix(wholes[i], pe.ctxIDs))
		}
	}
	ctxIDs = pe.ctxIDs
	if !pe.prefix && shared < len(pe.ctxIDs) {
		ctxIDs = pe.ctxIDs[:shared]
		if shared == 0 { // the whole context merged: start from EOS
			if ctxIDs, err = startID(pe.tok); err != nil {
				return nil, nil, err
			}
		}
	}
	contIDs = make([][]int32, len(continuations))
	for i, w := range wholes {
		if !pe.prefix {
			w = w[shared:]
		}
		if len(w) == 0 {
			return nil, nil, fmt.Errorf("continuation %q adds no tokens to the context's: %w", pe.moved+continuations[i], api.ErrOutOfRange)
		}
		contIDs[i] = w
	}
	return ctxIDs, contIDs, nil
}

// commonPrefix returns how many leading ids a and b share.
func commonPrefix(a, b []int32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// startID returns the id an empty context starts from: the tokenizer's
// EOS, else its BOS.
func startID(tok *tokenizer.Tokenizer) ([]int32, error) {
	sp := tok.Special()
	id := sp.EOS
	if id < 0 {
		id = sp.BOS
	}
	if id < 0 {
		return nil, fmt.Errorf("an empty context needs the tokenizer's EOS or BOS token, and it has neither: %w", api.ErrNotFound)
	}
	return []int32{int32(id)}, nil
}

// pySpace reports whether r is white space to Python's str.isspace: Go's
// unicode.IsSpace and the separators U+001C to U+001F.
func pySpace(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) }

// encodePlain encodes text without the post-processor's special tokens,
// truncation or padding (tokenizer.EncodeRaw), as lm-evaluation-harness's
// tok_encode for causal models.
func encodePlain(tok *tokenizer.Tokenizer, text string) ([]int32, error) {
	e, err := tok.EncodeRaw(text, false)
	if err != nil {
		return nil, err
	}
	ids := make([]int32, 0, len(e.IDs))
	for _, id := range e.IDs {
		if id < 0 || id > math.MaxInt32 {
			return nil, fmt.Errorf("token id %d: %w", id, api.ErrOutOfRange)
		}
		ids = append(ids, int32(id))
	}
	return ids, nil
}

// checkPair refuses (api.ErrOutOfRange) an empty context or continuation
// and ids outside a vocabulary of V tokens.
func checkPair(V int, contextIDs, continuationIDs []int32) error {
	if len(contextIDs) == 0 || len(continuationIDs) == 0 {
		return fmt.Errorf("log-likelihood: %d context and %d continuation tokens: want at least 1 of each: %w", len(contextIDs), len(continuationIDs), api.ErrOutOfRange)
	}
	for i, list := range [][]int32{contextIDs, continuationIDs} {
		for j, id := range list {
			if id < 0 || int(id) >= V {
				return fmt.Errorf("log-likelihood: %s token %d: id %d outside the vocabulary [0, %d): %w",
					[]string{"context", "continuation"}[i], j, id, V, api.ErrOutOfRange)
			}
		}
	}
	return nil
}

// LogLikelihood returns the log-likelihood, in nats, of continuationIDs
// after contextIDs, the sum of log p(continuationIDs[i] | contextIDs,
// continuationIDs[:i]), from one m.Forward over the context and the
// continuation but its last id, with the log-softmax taken in float64;
// and whether greedy decoding gives the continuation (each of its ids is
// the first largest logit of the position before it). Both lists must be
// non-empty and hold ids of m's vocabulary (api.ErrOutOfRange otherwise).
func LogLikelihood(ctx context.Context, m api.Model, contextIDs, continuationIDs []int32) (loglik float64, greedy bool, err error) {
	defer api.Recover(&err)
	if m == nil {
		return 0, false, fmt.Errorf("log-likelihood: no model: %w", api.ErrConfig)
	}
	V := m.Config().Vocab()
	if err := checkPair(V, contextIDs, continuationIDs); err != nil {
		return 0, false, err
	}
	in := make([]int32, 0, len(contextIDs)+len(continuationIDs)-1)
	in = append(append(in, contextIDs...), continuationIDs[:len(continuationIDs)-1]...)
	t, err := m.Forward(ctx, [][]int32{in}, api.Form{})
	if err != nil {
		return 0, false, fmt.Errorf("log-likelihood: %w", err)
	}
	logits, err := hostLogits(t, len(in), V)
	if err != nil {
		return 0, false, fmt.Errorf("log-likelihood: %w", err)
	}
	var ll sum
	greedy = true
	for i, target := range continuationIDs {
		row := logits[(len(contextIDs)-1+i)*V : (len(contextIDs)+i)*V]
		ll.add(-nll(row, target))
		greedy = greedy && argmax(row) == int(target)
	}
	return ll.value(), greedy, nil
}
