package wire

import (
	"fmt"

	"github.com/densessm/densessm/api"
	pb "github.com/densessm/densessm/plugins/proto"
)

// Variable-length and packed batches (api.Layout) on the wire: the ids
// travel as a [B,T] tensor, T the longest row, each row padded with zeros,
// and its rows' lengths beside it (ForwardRequest.lengths,
// BatchLayout.lengths; empty when every row is full); a training batch's
// document starts travel in its BatchLayout.

// EncodeRagged encodes sequences of any lengths (each at least 1): the ids
// padded to the longest, and each row's length, or nil lengths when they
// are all the same (what EncodeIDs writes).
func EncodeRagged(ids [][]int32) (enc []byte, lengths []int64, err error) {
	if !api.Ragged(ids) {
		enc, err = EncodeIDs(ids)
		return enc, nil, err
	}
	l, err := api.LayoutOf(ids)
	if err != nil {
		return nil, nil, err
	}
	if enc, err = EncodeIDs(l.Padded(ids, 0)); err != nil {
		return nil, nil, err
	}
	return enc, int64s(l.Lens), nil
}

// DecodeRagged reads what EncodeRagged wrote: the rows of the [B,T] ids
// cut to their lengths (lengths empty: every row whole). Lengths that do
// not fit the ids (not one per row, outside [1,T], none of them T) are
// api.ErrCorrupt.
func DecodeRagged(b []byte, lengths []int64) ([][]int32, error) {
	ids, err := DecodeIDs(b)
	if err != nil || len(lengths) == 0 {
		return ids, err
	}
	if err := checkLengths(lengths, len(ids), len(ids[0])); err != nil {
		return nil, err
	}
	for i, n := range lengths {
		ids[i] = ids[i][:n:n]
	}
	return ids, nil
}

// checkLengths checks rows' lengths against ids of shape [B,T]: one per
// row, each in [1,T], the longest T.
func checkLengths(lengths []int64, B, T int) error {
	if len(lengths) != B {
		return fmt.Errorf("ids: %d lengths for %d rows: %w", len(lengths), B, api.ErrCorrupt)
	}
	longest := int64(0)
	for i, n := range lengths {
		if n < 1 || n > int64(T) {
			return fmt.Errorf("ids: row %d of %d tokens in rows of %d: %w", i, n, T, api.ErrCorrupt)
		}
		longest = max(longest, n)
	}
	if longest != int64(T) {
		return fmt.Errorf("ids: rows of at most %d tokens padded to %d: %w", longest, T, api.ErrCorrupt)
	}
	return nil
}

// EncodeBatch encodes a training batch: its inputs and targets, padded as
// EncodeRagged pads them, and its layout, nil for an ordinary batch (rows
// of one length, no document starts). The batch is checked as
// api.Batch.Layout checks it (api.ErrShape).
func EncodeBatch(b api.Batch) (in, tg []byte, layout *pb.BatchLayout, err error) {
	l, err := b.Layout()
	if err != nil {
		return nil, nil, nil, err
	}
	if l.Plain() {
		if in, err = EncodeIDs(b.Inputs); err == nil {
			tg, err = EncodeIDs(b.Targets)
		}
		return in, tg, nil, err
	}
	if in, err = EncodeIDs(l.Padded(b.Inputs, 0)); err != nil {
		return nil, nil, nil, err
	}
	if tg, err = EncodeIDs(l.Padded(b.Targets, api.IgnoreIndex)); err != nil {
		return nil, nil, nil, err
	}
	layout = &pb.BatchLayout{}
	if api.Ragged(b.Inputs) {
		layout.Lengths = int64s(l.Lens)
	}
	if b.Starts != nil {
		for _, row := range b.Starts {
			layout.Starts = append(layout.Starts, &pb.Positions{Positions: int64s(row)})
		}
	}
	return in, tg, layout, nil
}

// DecodeBatch reads what EncodeBatch wrote (layout nil or empty for an
// ordinary batch). Inputs and targets of different shapes, lengths that do
// not fit them and starts that are not one list per row are
// api.ErrCorrupt; starts outside their rows are api.ErrShape
// (api.NewLayout's check). Nothing is allocated for the layout before its
// sizes are checked.
func DecodeBatch(in, tg []byte, layout *pb.BatchLayout) (api.Batch, error) {
	var b api.Batch
	var err error
	if b.Inputs, err = DecodeIDs(in); err != nil {
		return api.Batch{}, fmt.Errorf("inputs: %w", err)
	}
	if b.Targets, err = DecodeIDs(tg); err != nil {
		return api.Batch{}, fmt.Errorf("targets: %w", err)
	}
	B, T := len(b.Inputs), len(b.Inputs[0])
	if len(b.Targets) != B || len(b.Targets[0]) != T {
		return api.Batch{}, fmt.Errorf("targets of %d×%d for inputs of %d×%d: %w", len(b.Targets), len(b.Targets[0]), B, T, api.ErrCorrupt)
	}
	lengths, starts := layout.GetLengths(), layout.GetStarts()
	if len(lengths) > 0 {
		if err := checkLengths(lengths, B, T); err != nil {
			return api.Batch{}, err
		}
		for i, n := range lengths {
			b.Inputs[i] = b.Inputs[i][:n:n]
			b.Targets[i] = b.Targets[i][:n:n]
		}
	}
	if len(starts) == 0 {
		return b, checkBatch(b)
	}
	if len(starts) != B {
		return api.Batch{}, fmt.Errorf("document starts for %d rows of %d: %w", len(starts), B, api.ErrCorrupt)
	}
	b.Starts = make([][]int, B)
	for r, row := range starts {
		ps := row.GetPositions()
		if len(ps) >= len(b.Inputs[r]) {
			return api.Batch{}, fmt.Errorf("%d document starts in a row of %d tokens: %w", len(ps), len(b.Inputs[r]), api.ErrShape)
		}
		if len(ps) == 0 {
			continue
		}
		b.Starts[r] = make([]int, len(ps))
		for i, p := range ps {
			if p < 1 || p >= int64(len(b.Inputs[r])) {
				return api.Batch{}, fmt.Errorf("document start %d of row %d: want a position inside (0, %d): %w", p, r, len(b.Inputs[r]), api.ErrShape)
			}
			b.Starts[r][i] = int(p)
		}
	}
	return b, checkBatch(b)
}

// checkBatch checks a decoded batch as api.Batch.Layout does.
func checkBatch(b api.Batch) error {
	_, err := b.Layout()
	return err
}

// int64s converts ints for the wire.
func int64s(xs []int) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = int64(x)
	}
	return out
}
