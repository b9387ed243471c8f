package eval

import (
	"context"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/tokenizer"
)

// DefaultDelimiter goes between a context and a choice unless the example
// or the options say otherwise: lm-evaluation-harness's target_delimiter.
const DefaultDelimiter = " "

// MCOptions configures ScoreMC.
type MCOptions struct {
	// Delimiter goes between the context and each choice of the examples
	// that do not set their own; nil means DefaultDelimiter.
	Delimiter *string
}

// MCScore is the score of one example.
type MCScore struct {
	// LogLik is the log-likelihood of each choice's continuation tokens
	// after the context's, in nats.
	LogLik []float64 `json:"loglik"`
	// Greedy tells, per choice, whether greedy decoding from the context
	// gives the continuation's tokens.
	Greedy []bool `json:"greedy"`
	// Tokens is the number of continuation tokens of each choice.
	Tokens []int `json:"tokens"`
	// Pred is the choice of largest LogLik (the first of equals).
	Pred int `json:"pred"`
	// PredNorm is the choice of largest LogLik over the choice's length
	// in characters (see ScoreMC).
	PredNorm int `json:"pred_norm"`
	// Label is the right choice.
	Label int `json:"label"`
}

// MCResult is the score of a task.
type MCResult struct {
	// Examples is the number of examples scored.
	Examples int `json:"examples"`
	// Acc is the fraction of examples whose Pred is the label, AccNorm
	// that whose PredNorm is.
	Acc     float64 `json:"acc"`
	AccNorm float64 `json:"acc_norm"`
	// AccStderr and AccNormStderr are the standard errors of the means,
	// as lm-evaluation-harness reports them: the sample standard deviation
	// (n-1 in the denominator) over √n. They are NaN for a single example
	// (lm-evaluation-harness writes N/A), which encoding/json does not
	// marshal.
	AccStderr     float64 `json:"acc_stderr"`
	AccNormStderr float64 `json:"acc_norm_stderr"`
	// Details has one score per example, in order.
	Details []MCScore `json:"details"`
}

// ScoreMC scores the examples with m, encoding text with tok, as
// lm-evaluation-harness 0.4 scores a multiple_choice task:
//
//   - each choice's continuation is the delimiter then the choice, the
//     delimiter being the example's own, else o.Delimiter, else
//     DefaultDelimiter;
//   - the context and the continuations are encoded as EncodePair does,
//     all choices together, so that where the tokenizer merges the end of
//     the context with a choice, every choice is scored after the same
//     context ids (see EncodePair); the choice's log-likelihood is
//     LogLikelihood's (one Forward over the context and the continuation),
//     or, for a model whose states can be copied, the same sums after the
//     context's state is computed once and copied for each choice (the
//     forms agree to float32 rounding);
//   - acc counts the examples where the largest log-likelihood is the
//     label's, acc_norm those where the largest log-likelihood divided by
//     the choice's length is: the length of the choice as written in the
//     example, without the delimiter, in characters (Unicode code points,
//     as Python's len), which is bytes for ASCII text. Ties go to the
//     first choice, as numpy's argmax.
//
// progress, when not nil, is called after each example with the number
// done and the total. The context is checked between examples (and by the
// model between layers). Errors name the example (from 0) and the choice.
func ScoreMC(ctx context.Context, m api.Model, tok *tokenizer.Tokenizer, ex []MCExample, o MCOptions, progress func(done, total int)) (_ MCResult, err error) {
	defer api.Recover(&err)
	if m == nil || tok == nil {
		return MCResult{}, fmt.Errorf("multiple choice: no model or no tokenizer: %w", api.ErrConfig)
	}
	if len(ex) == 0 {
		return MCResult{}, fmt.Errorf("multiple choice: no examples: %w", api.ErrConfig)
	}
	for i, e := range ex {
		if err := e.Validate(); err != nil {
			return MCResult{}, fmt.Errorf("multiple choice: example %d: %w", i, err)
		}
	}
	res := MCResult{Examples: len(ex), Details: make([]MCScore, len(ex))}
	acc := make([]float64, len(ex))
	accNorm := make([]float64, len(ex))
	for i, e := range ex {
		if err := ctx.Err(); err != nil {
			return MCResult{}, fmt.Errorf("multiple choice: %w", err)
		}
		s, err := scoreExample(ctx, m, tok, e, delimiter(e, o))
		if err != nil {
			return MCResult{}, fmt.Errorf("multiple choice: example %d: %w", i, err)
		}
		res.Details[i] = s
		if s.Pred == s.Label {
			acc[i] = 1
		}
		if s.PredNorm == s.Label {
			accNorm[i] = 1
		}
		if progress != nil {
			progress(i+1, len(ex))
		}
	}
	res.Acc, res.AccStderr = meanStderr(acc)
	res.AccNorm, res.AccNormStderr = meanStderr(accNorm)
	return res, nil
}

// delimiter returns the delimiter of example e under options o.
func delimiter(e MCExample, o MCOptions) string {
	switch {
	case e.Delimiter != nil:
		return *e.Delimiter
	case o.Delimiter != nil:
		return *o.Delimiter
	}
	return DefaultDelimiter
}

// scoreExample scores every choice of e.
func scoreExample(ctx context.Context, m api.Model, tok *tokenizer.Tokenizer, e MCExample, delim string) (MCScore, error) {
	pe, err := newPairEncoder(tok, e.Context)
	if err != nil {
		return MCScore{}, err
	}
	n := len(e.Choices)
	s := MCScore{LogLik: make([]float64, n), Greedy: make([]bool, n), Tokens: make([]int, n), Label: e.Label}
	conts := make([]string, n)
	for j, c := range e.Choices {
		conts[j] = delim + c
	}
	ctxIDs, contIDs, err := pe.encodeAll(conts)
	if err != nil {
		return MCScore{}, err
	}
	if s.LogLik, s.Greedy, err = choiceLogLikelihoods(ctx, m, ctxIDs, contIDs); err != nil {
		return MCScore{}, err
	}
	for j, cont := range contIDs {
		s.Tokens[j] = len(cont)
	}
	norm := func(k int) float64 { return s.LogLik[k] / float64(utf8.RuneCountInString(e.Choices[k])) }
	for j := range e.Choices {
		if s.LogLik[j] > s.LogLik[s.Pred] {
			s.Pred = j
		}
		if norm(j) > norm(s.PredNorm) {
			s.PredNorm = j
		}
	}
	return s, nil
}

// meanStderr returns the mean of xs and its standard error, the sample
// standard deviation over √n (NaN for fewer than two values).
func meanStderr(xs []float64) (mean, stderr float64) {
	n := float64(len(xs))
	var s sum
	for _, x := range xs {
		s.add(x)
	}
	mean = s.value() / n
	if len(xs) < 2 {
		return mean, math.NaN()
	}
	var ss sum
	for _, x := range xs {
		ss.add((x - mean) * (x - mean))
	}
	return mean, math.Sqrt(ss.value()/(n-1)) / math.Sqrt(n)
}
