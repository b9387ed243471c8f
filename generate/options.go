package generate

import (
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
)

// Options says how many tokens to decode and how to pick each one. The
// zero value is not valid (MaxTokens, TopP and RepetitionPenalty must be
// set); start from DefaultOptions.
//
// The rules apply in Hugging Face transformers' order (repetition penalty,
// then temperature, top-k, top-p, min-p); see Sampler for where this
// package follows its logits processors exactly and where it differs.
type Options struct {
	// MaxTokens is the number of new tokens per sequence, at most
	// (--max-tokens, > 0). An end-of-sequence token does not count.
	MaxTokens int
	// Temperature divides the logits before sampling (--temperature,
	// finite, >= 0); 0 picks the most likely token (greedy decoding) and
	// turns the other sampling rules off, as do_sample=False does.
	Temperature float64
	// TopK keeps the K most likely tokens (--top-k, >= 0; 0 is off).
	// TopK 1 is greedy decoding.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches P (--top-p, 0 < P <= 1; 1 is off).
	TopP float64
	// MinP drops the tokens whose probability is below MinP times that of
	// the most likely token (--min-p, 0 <= P < 1; 0 is off).
	MinP float64
	// RepetitionPenalty makes the tokens already seen (in the prompt or
	// the output) less likely: a positive logit is divided by it, a
	// negative one multiplied (--repetition-penalty, finite, > 0; 1 is
	// off; below 1 favours repetition).
	RepetitionPenalty float64
	// Seed seeds each sequence's random generator (--seed). Every sequence
	// of a batch gets a generator seeded with the same Seed, so a batch
	// gives what one call per prompt gives.
	Seed uint64
	// EOS lists the token ids that end a sequence (--eos, each >= 0 and
	// below the model's vocabulary). The end-of-sequence token itself is
	// not part of the output and is not handed to the caller. Empty: a
	// sequence ends only at MaxTokens (the text-level functions default it
	// to the tokenizer's EOS token).
	EOS []int32
	// State, when not nil, is a state of one sequence that decoding
	// continues instead of starting from an empty one (api.Restore makes
	// one from a snapshot): the single prompt follows the tokens it has
	// consumed. When decoding ends, the state has consumed the prompt and
	// every token sampled, the last one and an end-of-sequence token
	// included, so that it can be saved (api.Snapshot) and continued. On
	// an error it is left part way.
	State api.State
	// Cache, when not nil, prefills the single prompt from the longest
	// prefix of it whose state the cache holds, and keeps the prompt's
	// states for later prompts (PrefixCache). It cannot be used with
	// State.
	Cache *PrefixCache
}

// DefaultOptions returns greedy decoding of at most 256 tokens with every
// sampling rule off, Hugging Face's generate defaults apart from top-k
// (which Hugging Face sets to 50 but only applies when sampling).
func DefaultOptions() Options {
	return Options{MaxTokens: 256, TopP: 1, RepetitionPenalty: 1}
}

// Validate reports the first option outside its domain, naming it as the
// command line spells it, with an error wrapping api.ErrConfig.
func (o Options) Validate() error {
	switch {
	case o.MaxTokens <= 0:
		return fmt.Errorf("--max-tokens %d: want a count > 0: %w", o.MaxTokens, api.ErrConfig)
	case !(o.Temperature >= 0) || math.IsInf(o.Temperature, 0):
		return fmt.Errorf("--temperature %v: want a finite t >= 0 (0 is greedy): %w", o.Temperature, api.ErrConfig)
	case o.TopK < 0:
		return fmt.Errorf("--top-k %d: want k >= 0 (0 is off): %w", o.TopK, api.ErrConfig)
	case !(o.TopP > 0 && o.TopP <= 1):
		return fmt.Errorf("--top-p %v: want 0 < p <= 1 (1 is off): %w", o.TopP, api.ErrConfig)
	case !(o.MinP >= 0 && o.MinP < 1):
		return fmt.Errorf("--min-p %v: want 0 <= p < 1 (0 is off): %w", o.MinP, api.ErrConfig)
	case !(o.RepetitionPenalty > 0) || math.IsInf(o.RepetitionPenalty, 0):
		return fmt.Errorf("--repetition-penalty %v: want a finite penalty > 0 (1 is off): %w", o.RepetitionPenalty, api.ErrConfig)
	}
	for _, id := range o.EOS {
		if id < 0 {
			return fmt.Errorf("--eos %d: want a token id >= 0: %w", id, api.ErrConfig)
		}
	}
	return nil
}

// checkVocab validates o and checks its EOS ids against a vocabulary of
// vocab tokens.
func (o Options) checkVocab(vocab int) error {
	if err := o.Validate(); err != nil {
		return err
	}
	for _, id := range o.EOS {
		if int(id) >= vocab {
			return fmt.Errorf("--eos %d: the model has %d tokens: %w", id, vocab, api.ErrOutOfRange)
		}
	}
	return nil
}

// greedy reports whether the options pick the most likely token.
func (o Options) greedy() bool { return o.Temperature == 0 || o.TopK == 1 }
