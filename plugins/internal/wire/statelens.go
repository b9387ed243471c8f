package wire

import (
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
	pb "github.com/densessm/densessm/plugins/proto"
)

// A state snapshot's header on the wire (StateHeader): its batch, tokens
// and, when its sequences have consumed different numbers of tokens (after
// a Prefill of sequences of different lengths), each one's (lens; empty
// when they all have consumed tokens).

// EncodeStateHeader returns the header of snap (model and state 0), its
// counts checked first (api.StateSnapshot.CheckLens: api.ErrCorrupt).
// Lens that are all the same travel as none.
func EncodeStateHeader(snap api.StateSnapshot) (*pb.StateHeader, error) {
	if snap.Batch < 0 {
		return nil, fmt.Errorf("state of %d sequences: %w", snap.Batch, api.ErrCorrupt)
	}
	if len(snap.Lens) == 0 {
		snap.Lens = nil // empty, not nil: CheckLens would take the least of none
	}
	if err := snap.CheckLens(); err != nil {
		return nil, err
	}
	h := &pb.StateHeader{Batch: int64(snap.Batch), Tokens: int64(snap.Tokens), Tensors: int64(len(snap.Tensors))}
	if _, per := api.CompactLens(snap.Lens); per != nil {
		h.Lens = int64s(per)
	}
	return h, nil
}

// DecodeStateHeader reads a header's batch, tokens and lens into a
// snapshot without tensors. Counts out of their domain (a negative batch or
// tokens, or more than an int holds; lens not one per sequence in [0, tokens], the largest tokens) are
// api.ErrCorrupt; nothing is allocated for the lens before their number is
// checked. Lens that are all the same come back as none (nil Lens).
func DecodeStateHeader(h *pb.StateHeader) (api.StateSnapshot, error) {
	if h == nil {
		return api.StateSnapshot{}, fmt.Errorf("no state header: %w", api.ErrCorrupt)
	}
	if h.Batch < 0 || h.Tokens < 0 || h.Batch > math.MaxInt || h.Tokens > math.MaxInt {
		return api.StateSnapshot{}, fmt.Errorf("state of %d sequences at %d tokens: %w", h.Batch, h.Tokens, api.ErrCorrupt)
	}
	snap := api.StateSnapshot{Batch: int(h.Batch), Tokens: int(h.Tokens)}
	if len(h.Lens) == 0 {
		return snap, nil
	}
	if int64(len(h.Lens)) != h.Batch {
		return api.StateSnapshot{}, fmt.Errorf("state of %d sequences with %d sequence lengths: %w", h.Batch, len(h.Lens), api.ErrCorrupt)
	}
	lens := make([]int, len(h.Lens))
	for i, n := range h.Lens {
		if n < 0 || n > h.Tokens {
			return api.StateSnapshot{}, fmt.Errorf("sequence %d at %d tokens in a state at %d: %w", i, n, h.Tokens, api.ErrCorrupt)
		}
		lens[i] = int(n)
	}
	snap.Lens = lens
	if err := snap.CheckLens(); err != nil {
		return api.StateSnapshot{}, err
	}
	_, snap.Lens = api.CompactLens(lens)
	return snap, nil
}
