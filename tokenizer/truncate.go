package tokenizer

import (
	"encoding/json"
	"fmt"

	"github.com/densessm/densessm/api"
)

// truncation is the file's "truncation" setting, for single sequences.
type truncation struct {
	maxLength  int
	left       bool // cut from the start instead of the end
	onlySecond bool // strategy OnlySecond: an error for a single sequence
}

// padding is the file's "padding" setting.
type padding struct {
	fixed    int  // pad to this length; 0 pads to the longest of a batch
	left     bool // put the padding before the tokens
	multiple int  // round the length up to a multiple of this (0: no rounding)
	id       int
	token    string
}

// parseTruncation reads the "truncation" object.
func parseTruncation(raw json.RawMessage) (*truncation, error) {
	var f struct {
		Direction string `json:"direction"`
		MaxLength *int   `json:"max_length"`
		Strategy  string `json:"strategy"`
	}
	if err := json.Unmarshal(raw, &f); err != nil || f.MaxLength == nil || *f.MaxLength < 0 {
		return nil, fmt.Errorf("truncation %s: %w", raw, api.ErrCorrupt)
	}
	t := &truncation{maxLength: *f.MaxLength}
	switch f.Direction {
	case "", "Right":
	case "Left":
		t.left = true
	default:
		return nil, fmt.Errorf("truncation direction %q: %w", f.Direction, api.ErrCorrupt)
	}
	switch f.Strategy {
	case "", "LongestFirst", "OnlyFirst":
	case "OnlySecond":
		t.onlySecond = true
	default:
		return nil, fmt.Errorf("truncation strategy %q: %w", f.Strategy, api.ErrCorrupt)
	}
	return t, nil
}

// parsePadding reads the "padding" object.
func parsePadding(raw json.RawMessage) (*padding, error) {
	var f struct {
		Strategy  json.RawMessage `json:"strategy"`
		Direction string          `json:"direction"`
		Multiple  *int            `json:"pad_to_multiple_of"`
		PadID     int             `json:"pad_id"`
		PadToken  string          `json:"pad_token"`
	}
	if err := json.Unmarshal(raw, &f); err != nil || f.PadID < 0 {
		return nil, fmt.Errorf("padding %s: %w", raw, api.ErrCorrupt)
	}
	p := &padding{id: f.PadID, token: f.PadToken}
	var name string
	var fixed struct {
		Fixed *int `json:"Fixed"`
	}
	switch {
	case isNull(f.Strategy) || (json.Unmarshal(f.Strategy, &name) == nil && name == "BatchLongest"):
	case json.Unmarshal(f.Strategy, &fixed) == nil && fixed.Fixed != nil && *fixed.Fixed >= 0:
		p.fixed = *fixed.Fixed
	default:
		return nil, fmt.Errorf("padding strategy %s: %w", f.Strategy, api.ErrCorrupt)
	}
	switch f.Direction {
	case "", "Right":
	case "Left":
		p.left = true
	default:
		return nil, fmt.Errorf("padding direction %q: %w", f.Direction, api.ErrCorrupt)
	}
	if f.Multiple != nil {
		if *f.Multiple < 0 {
			return nil, fmt.Errorf("pad_to_multiple_of %d: %w", *f.Multiple, api.ErrCorrupt)
		}
		p.multiple = *f.Multiple
	}
	return p, nil
}

// truncate cuts an encoding (before the post-processor) so that, with the
// nAdded special tokens the post-processor will add, it fits maxLength.
// As in Hugging Face, a limit smaller than nAdded disables truncation.
func (t *truncation) truncate(e *Encoding, addSpecial bool, nAdded int, full bool) error {
	limit := t.maxLength
	if addSpecial && nAdded > 0 {
		if limit < nAdded {
			return nil
		}
		limit -= nAdded
	}
	if len(e.IDs) <= limit {
		return nil
	}
	if t.onlySecond && limit > 0 {
		return fmt.Errorf("truncation strategy OnlySecond needs a second sequence: %w", api.ErrConfig)
	}
	lo, hi := 0, limit
	if t.left {
		lo, hi = len(e.IDs)-limit, len(e.IDs)
	}
	e.IDs = e.IDs[lo:hi]
	if full {
		e.Tokens, e.Offsets, e.Special = e.Tokens[lo:hi], e.Offsets[lo:hi], e.Special[lo:hi]
	}
	return nil
}

// target returns the length to pad to, given the longest encoding.
func (p *padding) target(longest int) int {
	n := longest
	if p.fixed > 0 {
		n = p.fixed
	}
	if p.multiple > 0 && n%p.multiple != 0 {
		n += p.multiple - n%p.multiple
	}
	return n
}

// pad extends an encoding to n tokens with the padding token.
func (p *padding) pad(e *Encoding, n int, full bool) {
	k := n - len(e.IDs)
	if k <= 0 {
		return
	}
	ids := make([]int, k)
	for i := range ids {
		ids[i] = p.id
	}
	e.IDs = joinPad(e.IDs, ids, p.left)
	if full {
		toks := make([]string, k)
		offs := make([][2]int, k)
		special := make([]bool, k)
		for i := range toks {
			toks[i] = p.token
			special[i] = true
		}
		e.Tokens = joinPad(e.Tokens, toks, p.left)
		e.Offsets = joinPad(e.Offsets, offs, p.left)
		e.Special = joinPad(e.Special, special, p.left)
	}
}

// joinPad puts the padding before or after the values.
func joinPad[T any](values, pad []T, left bool) []T {
	if left {
		return append(pad, values...)
	}
	return append(values, pad...)
}

// addedCount returns how many special tokens a post-processor adds to a
// single sequence.
func addedCount(p postProcessor) int {
	switch p := p.(type) {
	case *templateProcessor:
		n := 0
		for _, piece := range p.single {
			if !piece.sequence {
				n += len(p.specials[piece.special].ids)
			}
		}
		return n
	case *clsSepProcessor:
		return 2
	case sequenceProcessor:
		n := 0
		for _, q := range p {
			n += addedCount(q)
		}
		return n
	}
	return 0
}
