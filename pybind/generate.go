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
func (m *Model) Generate(promptsJSON, optionsJSON string, stream bool) (*Job, error) {
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
	return startJob(func(ctx context.Context, emit func(any)) (any, error) {
		var texts []string
		err := m.use(func(am api.Model) error {
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
