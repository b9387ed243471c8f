// Package tokens checks and uploads the token ids that the architectures'
// models take, so that every model gives the same errors for bad input.
package tokens

import (
	"encoding/binary"
	"fmt"

	"github.com/densessm/densessm/api"
)

// Batch checks that ids holds at least one sequence, that all sequences
// have the same length T and that every id is in [0, vocab), and uploads
// them as an I32 tensor [B,T] on b. It also returns the ids flattened.
func Batch(b api.Backend, ids [][]int32, vocab int) (api.Tensor, []int32, error) {
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("empty batch: %w", api.ErrShape)
	}
	T := len(ids[0])
	flat := make([]int32, 0, len(ids)*T)
	for s, row := range ids {
		if len(row) != T {
			return nil, nil, fmt.Errorf("sequence %d has %d tokens, sequence 0 has %d: %w", s, len(row), T, api.ErrShape)
		}
		for t, id := range row {
			if id < 0 || int(id) >= vocab {
				return nil, nil, fmt.Errorf("token %d of sequence %d is %d, outside the vocabulary [0,%d): %w", t, s, id, vocab, api.ErrOutOfRange)
			}
		}
		flat = append(flat, row...)
	}
	return api.FromInt32s(b, flat, len(ids), T), flat, nil
}

// Targets checks that batch.Targets has the shape [B,T] of the inputs and
// uploads them as I32 [B*T]. Values are not checked here: the cross-entropy
// kernel refuses a target outside the vocabulary that is not
// api.IgnoreIndex.
func Targets(b api.Backend, batch api.Batch, shape api.Shape) (api.Tensor, error) {
	if len(batch.Targets) != shape[0] {
		return nil, fmt.Errorf("%d target rows for %d input rows: %w", len(batch.Targets), shape[0], api.ErrShape)
	}
	flat := make([]int32, 0, shape.NumElements())
	for i, row := range batch.Targets {
		if len(row) != shape[1] {
			return nil, fmt.Errorf("target row %d has %d tokens, want %d: %w", i, len(row), shape[1], api.ErrShape)
		}
		flat = append(flat, row...)
	}
	return api.FromInt32s(b, flat, len(flat)), nil
}

// Training is a training batch checked and uploaded (Upload).
type Training struct {
	// Layout is the rows' lengths and document starts.
	Layout api.Layout
	// Inputs are the inputs, I32 [B,T], padded with id 0 to the longest
	// row; Flat holds the same ids.
	Inputs api.Tensor
	Flat   []int32
	// Targets are the targets, I32 [B*T], padded with api.IgnoreIndex.
	Targets api.Tensor
}

// Upload checks a training batch whose rows may have different lengths and
// document starts (api.Batch.Layout) and uploads it.
func Upload(b api.Backend, batch api.Batch, vocab int) (Training, error) {
	lay, err := batch.Layout()
	if err != nil {
		return Training{}, err
	}
	tok, flat, err := Batch(b, lay.Padded(batch.Inputs, 0), vocab)
	if err != nil {
		return Training{}, err
	}
	targets := make([]int32, 0, len(flat))
	for _, row := range lay.Padded(batch.Targets, api.IgnoreIndex) {
		targets = append(targets, row...)
	}
	return Training{Layout: lay, Inputs: tok, Flat: flat, Targets: api.FromInt32s(b, targets, len(targets))}, nil
}

// Step holds the ids of one decode step, one per sequence, uploaded without
// allocating.
type Step struct {
	raw []byte
	IDs api.Tensor // I32 [B]
}

// NewStep makes the buffers of a step for batch sequences on b.
func NewStep(b api.Backend, batch int) *Step {
	return &Step{raw: make([]byte, 4*batch), IDs: b.Alloc(api.I32, batch)}
}

// Upload checks that every id is in [0, vocab) and uploads them into s.IDs;
// len(ids) must be the batch size.
func (s *Step) Upload(b api.Backend, ids []int32, vocab int) error {
	if 4*len(ids) != len(s.raw) {
		return fmt.Errorf("%d ids for a step of %d sequences: %w", len(ids), len(s.raw)/4, api.ErrShape)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("token %d of the step is %d, outside the vocabulary [0,%d): %w", i, id, vocab, api.ErrOutOfRange)
		}
		binary.LittleEndian.PutUint32(s.raw[4*i:], uint32(id))
	}
	b.Upload(s.IDs, s.raw)
	return nil
}

// Lens counts the tokens each sequence of a state has consumed; after a
// Prefill of sequences of different lengths they differ.
type Lens []int

// Max returns the most tokens a sequence has consumed (api.State.Len).
func (l Lens) Max() int {
	n := 0
	for _, k := range l {
		n = max(n, k)
	}
	return n
}

// Uniform returns the count when every sequence has consumed the same.
func (l Lens) Uniform() (int, bool) {
	for _, k := range l {
		if k != l[0] {
			return 0, false
		}
	}
	return l[0], true
}

// Add counts the tokens of ids, one row per sequence.
func (l Lens) Add(ids [][]int32) {
	for b, seq := range ids {
		l[b] += len(seq)
	}
}

// AddAll counts n more tokens for every sequence.
func (l Lens) AddAll(n int) {
	for b := range l {
		l[b] += n
	}
}
