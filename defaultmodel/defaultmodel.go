// Package defaultmodel is the small model built into densessm: a
// DenseMamba of about 2.3 million parameters and its 4096-token byte-level
// BPE tokenizer, both trained by densessm itself on the Go standard
// library's source (the .go files of $(go env GOROOT)/src), stored in
// bfloat16. It is what `densessm generate` and `densessm eval` use when no
// --model is named, so that they work on a fresh clone with nothing to
// download: it writes plausible-looking Go, and nothing else.
//
// `make default-model` reproduces it from scratch with the settings in
// train.yaml (it builds densessm with -tags nodefaultmodel, which leaves
// the model out, so that it works where there is none yet);
// docs/default-model.md records how it was made, how long it
// took and what it scores.
package defaultmodel

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/tokenizer"
)

// Name is how the default model is called in messages and reports.
const Name = "the default model (densessm-go)"

// Config returns the model's config.json.
func Config() ([]byte, error) {
	if configJSON == nil {
		return nil, errMissing
	}
	return append([]byte(nil), configJSON...), nil
}

// TokenizerJSON returns the tokenizer's tokenizer.json.
func TokenizerJSON() ([]byte, error) {
	if tokenizerJSON == nil {
		return nil, errMissing
	}
	return append([]byte(nil), tokenizerJSON...), nil
}

// errMissing is the error of a binary built with -tags nodefaultmodel.
var errMissing = fmt.Errorf("%s is not in this build (built with -tags nodefaultmodel): name a model with --model: %w", Name, api.ErrNotFound)

// Load builds the default model on the backend opts.Build selects,
// widening its bfloat16 weights to float32. opts are as for
// checkpoint.LoadModel (CheckConfig lets a caller refuse it before
// anything is allocated).
func Load(ctx context.Context, opts checkpoint.LoadOptions) (api.Model, error) {
	if weights == nil {
		return nil, errMissing
	}
	m, err := checkpoint.LoadModelBytes(ctx, "default-model", configJSON, weights, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	return m, nil
}

// Tokenizer returns the default model's tokenizer.
func Tokenizer() (*tokenizer.Tokenizer, error) {
	if tokenizerJSON == nil {
		return nil, errMissing
	}
	tok, err := tokenizer.FromJSON(tokenizerJSON)
	if err != nil {
		return nil, fmt.Errorf("%s: tokenizer: %w", Name, err)
	}
	return tok, nil
}
