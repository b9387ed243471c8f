package pybind

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/densessm/densessm/api"
)

// State is a model's recurrent state for batch sequences: the tokens seen
// so far, summarised in memory that does not grow with them. It uses its
// model's lock, and fails once the model is closed.
type State struct {
	model *Model
	s     api.State // nil once closed
	batch int
}

// NewState returns an empty state for batch sequences.
func (m *Model) NewState(batch int) (*State, error) {
	var st *State
	err := m.use(func(am api.Model) error {
		if batch < 1 {
			return fmt.Errorf("batch=%d: want at least 1: %w", batch, api.ErrConfig)
		}
		s, err := am.NewState(batch)
		if err != nil {
			return err
		}
		st = &State{model: m, s: s, batch: batch}
		return nil
	})
	return st, err
}

// use runs f with the model and the state, or returns errClosed.
func (s *State) use(f func(api.Model, api.State) error) error {
	return s.model.use(func(am api.Model) error {
		if s.s == nil {
			return fmt.Errorf("state: %w", errClosed)
		}
		return f(am, s.s)
	})
}

// Len returns the number of tokens the state has seen: per sequence, the
// most any sequence has seen when they differ (Lens).
func (s *State) Len() (int, error) {
	n := 0
	err := s.use(func(_ api.Model, st api.State) error {
		n = st.Len()
		return nil
	})
	return n, err
}

// Lens returns, as a JSON list, the number of tokens each sequence has
// seen (api.StateLens): they differ after a Prefill of sequences of
// different lengths, or in a state loaded from a file of such a state.
func (s *State) Lens() (string, error) {
	var out []byte
	err := s.use(func(_ api.Model, st api.State) error {
		var err error
		out, err = json.Marshal(api.StateLens(st))
		return err
	})
	return string(out), err
}

// Batch returns the number of sequences the state holds (as many as it
// was made for; for a loaded state, as many as its file holds).
func (s *State) Batch() int { return s.batch }

// Step feeds one token per sequence (the Arrow array at idsArray/idsSchema
// holds batch ids) and exports the next-token logits [batch, V] into the
// Arrow structs at outArray/outSchema.
func (s *State) Step(idsArray, idsSchema, outArray, outSchema int64) error {
	ids, err := importIDs(cArray{idsArray, idsSchema}, "ids")
	if err != nil {
		return err
	}
	out := cArray{outArray, outSchema}
	if err := out.check("logits"); err != nil {
		return err
	}
	return s.use(func(am api.Model, st api.State) error {
		if len(ids) != s.batch {
			return fmt.Errorf("%d ids for a state of %d sequences: want one per sequence: %w", len(ids), s.batch, api.ErrShape)
		}
		if err := checkIDs([][]int32{ids}, am.Config().Vocab()); err != nil {
			return err
		}
		t, err := am.Step(context.Background(), st, ids)
		if err != nil {
			return err
		}
		exportTensor(t, out)
		return nil
	})
}

// Prefill starts a job that runs batch sequences of equal length (laid
// end to end in the Arrow array at idsArray/idsSchema) through the model
// from the state in mode (see Model.Logits), leaves the state after them,
// and exports the logits [batch, T, V] into outArray/outSchema.
func (s *State) Prefill(idsArray, idsSchema int64, mode string, chunk int, outArray, outSchema int64) (*Job, error) {
	ids, err := importIDs(cArray{idsArray, idsSchema}, "ids")
	if err != nil {
		return nil, err
	}
	seqs, err := splitBatch(ids, s.batch)
	if err != nil {
		return nil, err
	}
	return s.prefill(seqs, mode, chunk, cArray{outArray, outSchema})
}

// PrefillRagged is Prefill for sequences of different lengths, one per
// sequence of the state (lensJSON as for Model.LogitsRagged): each
// continues its sequence from where it stands and leaves it at its own
// end (Lens). The logits are [batch, T, V], T the longest, zero past each
// sequence's end. Only a model whose api.Info.Packed is set takes them,
// in the forms its Prefill allows (the parallel form; docs/state.md).
func (s *State) PrefillRagged(idsArray, idsSchema int64, lensJSON, mode string, chunk int, outArray, outSchema int64) (*Job, error) {
	ids, err := importIDs(cArray{idsArray, idsSchema}, "ids")
	if err != nil {
		return nil, err
	}
	seqs, err := splitLens(ids, lensJSON)
	if err != nil {
		return nil, err
	}
	if len(seqs) != s.batch {
		return nil, fmt.Errorf("%d sequences for a state of %d: want one per sequence: %w", len(seqs), s.batch, api.ErrShape)
	}
	return s.prefill(seqs, mode, chunk, cArray{outArray, outSchema})
}

// prefill starts the job of Prefill and PrefillRagged.
func (s *State) prefill(seqs [][]int32, mode string, chunk int, out cArray) (*Job, error) {
	form := api.Form{Chunk: chunk}
	var err error
	if form.Mode, err = api.ParseMode(mode); err != nil {
		return nil, err
	}
	if err := out.check("logits"); err != nil {
		return nil, err
	}
	return startJob(func(ctx context.Context, _ func(any)) (any, error) {
		return nil, s.use(func(am api.Model, st api.State) error {
			if err := checkIDs(seqs, am.Config().Vocab()); err != nil {
				return err
			}
			if err := checkRagged(am, seqs); err != nil {
				return err
			}
			t, err := am.Prefill(ctx, st, seqs, form)
			if err != nil {
				return err
			}
			exportTensor(t, out)
			return nil
		})
	}), nil
}

// Close releases the state; closing twice does nothing.
func (s *State) Close() error {
	s.model.mu.Lock()
	defer s.model.mu.Unlock()
	if s.s == nil {
		return nil
	}
	err := s.s.Close()
	s.s = nil
	return err
}
