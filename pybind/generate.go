package pybind

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/generate"
)

// generateOptions are Generate's options as the Python layer sends them
// (JSON); a field left out keeps the densessm generate command's default.
type generateOptions struct {
	MaxNewTokens      *int     `json:"max_new_tokens"`
	Temperature       *float64 `json:"temperature"`
	TopK              *int     `json:"top_k"`
	TopP              *float64 `json:"top_p"`
	MinP              *float64 `json:"min_p"`
	RepetitionPenalty *float64 `json:"repetition_penalty"`
	Seed              *uint64  `json:"seed"`
	Stop              []string `json:"stop"`
	EOS               []int32  `json:"eos"`
	IgnoreEOS         bool     `json:"ignore_eos"`
}

// textOptions returns the generate package's options: the densessm
// generate command's defaults (200 tokens, temperature 0.8, top-k 40,
// top-p 0.95, min-p 0.05, a random seed) with the fields o sets.
func (o generateOptions) textOptions() (generate.TextOptions, error) {
	t := generate.TextOptions{Options: generate.DefaultOptions(), Stop: o.Stop, IgnoreEOS: o.IgnoreEOS}
	t.MaxTokens, t.Temperature, t.TopK, t.TopP, t.MinP = 200, 0.8, 40, 0.95, 0.05
	t.Seed = rand.Uint64()
	set := func(dst *float64, v *float64) {
		if v != nil {
			*dst = *v
		}
	}
	if o.MaxNewTokens != nil {
		t.MaxTokens = *o.MaxNewTokens
	}
	if o.TopK != nil {
		t.TopK = *o.TopK
	}
	if o.Seed != nil {
		t.Seed = *o.Seed
	}
	set(&t.Temperature, o.Temperature)
	set(&t.TopP, o.TopP)
	set(&t.MinP, o.MinP)
	set(&t.RepetitionPenalty, o.RepetitionPenalty)
	t.EOS = o.EOS
	if err := t.Validate(); err != nil {
		return t, err
	}
	return t, nil
}

// Generate starts a job that continues each prompt of promptsJSON (a JSON
// array of strings) with the model, under optionsJSON (a JSON object:
// max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
// seed, stop, eos, ignore_eos; see generate.TextOptions). The prompts are
// decoded together as one batch. With stream, the job sends an event
// {"seq": i, "text": piece} for each piece of text as it becomes final.
// Its result is {"texts": [...], "seed": n}.
//
// state, when not nil, is a state of one sequence made by this model that
// the single prompt continues (generate.Options.State): afterwards it
// holds the prompt and every token sampled, the last one and an
// end-of-sequence token included; a job cancelled or failed part way
// leaves it part way. cache, when not nil, is a prefix cache of this model
// (Model.NewPrefixCache) that the single prompt starts from
// (generate.Options.Cache). They cannot be used together. (gopy passes a
// nil pointer for the handle 0.)
func (m *Model) Generate(promptsJSON, optionsJSON string, stream bool, state *State, cache *PrefixCache) (*Job, error) {
	var prompts []string
	if err := json.Unmarshal([]byte(promptsJSON), &prompts); err != nil {
		return nil, fmt.Errorf("prompts: %v: %w", err, api.ErrConfig)
	}
	if len(prompts) == 0 {
		return nil, fmt.Errorf("no prompts: %w", api.ErrConfig)
	}
	var o generateOptions
	dec := json.NewDecoder(strings.NewReader(cmp.Or(optionsJSON, "{}")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return nil, fmt.Errorf("generate options: %v: %w", err, api.ErrConfig)
	}
	opts, err := o.textOptions()
	if err != nil {
		return nil, err
	}
	if m.tok == nil {
		return nil, fmt.Errorf("generate needs the model's tokenizer, and this model has none: %w", api.ErrConfig)
	}
	if err := m.checkGenerateWith(len(prompts), state, cache); err != nil {
		return nil, err
	}
	return startJob(func(ctx context.Context, emit func(any)) (any, error) {
		var texts []string
		err := m.use(func(am api.Model) error {
			if state != nil {
				if state.s == nil { // read under m.mu, the state's lock
					return fmt.Errorf("state: %w", errClosed)
				}
				opts.State = state.s
			}
			if cache != nil {
				pc, err := cache.get()
				if err != nil {
					return err
				}
				opts.Cache = pc
			}
			var each func(int, string) error
			if stream {
				each = func(seq int, piece string) error {
					emit(map[string]any{"seq": seq, "text": piece})
					return nil
				}
			}
			var err error
			texts, err = generate.Stream(ctx, am, m.tok.t, prompts, opts, each)
			return err
		})
		if err != nil {
			return nil, err
		}
		return map[string]any{"texts": texts, "seed": opts.Seed}, nil
	}), nil
}

// checkGenerateWith refuses a state or a prefix cache that Generate cannot
// use with n prompts: both at once, one of another model, more than one
// prompt, a state of more than one sequence.
func (m *Model) checkGenerateWith(n int, state *State, cache *PrefixCache) error {
	switch {
	case state != nil && cache != nil:
		return fmt.Errorf("a state and a prefix cache together: the cache starts a prompt from states of its own, so pass one of them: %w", api.ErrConfig)
	case state != nil && state.model != m:
		return fmt.Errorf("a state of another model: generate continues states this model made (new_state, load_state, copy): %w", api.ErrConfig)
	case state != nil && n != 1:
		return fmt.Errorf("a state continues one prompt, not a batch of %d: %w", n, api.ErrConfig)
	case state != nil && state.batch != 1:
		return fmt.Errorf("a state of %d sequences: generate continues a state of one sequence: %w", state.batch, api.ErrConfig)
	case cache != nil && cache.model != m:
		return fmt.Errorf("a prefix cache of another model: make one with this model's prefix_cache: %w", api.ErrConfig)
	case cache != nil && n != 1:
		return fmt.Errorf("a prefix cache serves one prompt, not a batch of %d: %w", n, api.ErrConfig)
	}
	return nil
}
