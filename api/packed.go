package api

import (
	"context"
	"fmt"
	"slices"
)

// Variable-length and packed batches.
//
// A model whose Info.Packed is set takes, in Forward, Prefill (parallel
// form) and LossAndGrad, sequences of different lengths: row b holds len(ids[b]) tokens, and the
// rows are padded on the right, inside the model, to the longest. Logits
// past a row's end are zero; targets there add nothing to the loss. A
// training Batch may also carry Starts, the positions at which a new
// document begins inside a row (the packed layout of flash-linear-
// attention's cu_seqlens and Mamba-2's seq_idx): the recurrent state is
// empty again at each start, and a position that holds a rotation angle
// counts from its document's start. Either way, no position reads anything
// outside its own sequence or document, padding never enters a state, and
// each sequence's logits, loss and gradients are those it has run alone.

// Layout is how a batch of sequences lies in rows of T positions: what a
// model needs to run a variable-length or packed batch.
type Layout struct {
	// T is the positions per row: the longest sequence.
	T int
	// Lens holds each row's tokens; positions from Lens[b] to T are padding.
	Lens []int
	// Starts holds, for each row (or nil), the positions at which a new
	// document begins, increasing and inside (0, Lens[b]).
	Starts [][]int
}

// NewLayout checks lens (each at least 1) and starts (nil, or one list per
// row, each increasing and inside (0, lens[b])) and returns their layout.
func NewLayout(lens []int, starts [][]int) (Layout, error) {
	if len(lens) == 0 {
		return Layout{}, fmt.Errorf("empty batch: %w", ErrShape)
	}
	if starts != nil && len(starts) != len(lens) {
		return Layout{}, fmt.Errorf("%d rows of document starts for %d sequences: %w", len(starts), len(lens), ErrShape)
	}
	l := Layout{Lens: lens, Starts: starts}
	for b, n := range lens {
		if n < 1 {
			return Layout{}, fmt.Errorf("sequence %d has no tokens: %w", b, ErrShape)
		}
		l.T = max(l.T, n)
		if starts == nil {
			continue
		}
		prev := 0
		for _, s := range starts[b] {
			if s <= prev || s >= n {
				return Layout{}, fmt.Errorf("document start %d of sequence %d: want increasing positions inside (0, %d): %w", s, b, n, ErrShape)
			}
			prev = s
		}
	}
	return l, nil
}

// LayoutOf returns the layout of the sequences ids, of any lengths.
func LayoutOf(ids [][]int32) (Layout, error) {
	lens := make([]int, len(ids))
	for b, seq := range ids {
		lens[b] = len(seq)
	}
	return NewLayout(lens, nil)
}

// Layout returns the layout of the batch's inputs and starts, checking that
// every target row has its input row's length.
func (b Batch) Layout() (Layout, error) {
	if len(b.Targets) != len(b.Inputs) {
		return Layout{}, fmt.Errorf("%d target rows for %d input rows: %w", len(b.Targets), len(b.Inputs), ErrShape)
	}
	lens := make([]int, len(b.Inputs))
	for i, row := range b.Inputs {
		if len(b.Targets[i]) != len(row) {
			return Layout{}, fmt.Errorf("target row %d has %d tokens, its inputs %d: %w", i, len(b.Targets[i]), len(row), ErrShape)
		}
		lens[i] = len(row)
	}
	return NewLayout(lens, b.Starts)
}

// Documents returns the batch as one row per document: each row cut at its
// starts (the rows as they are when Starts is nil). Its rows have
// different lengths.
func (b Batch) Documents() Batch {
	if b.Starts == nil {
		return b
	}
	var out Batch
	for r, row := range b.Inputs {
		from := 0
		for _, s := range append(append([]int(nil), b.Starts[r]...), len(row)) {
			out.Inputs = append(out.Inputs, row[from:s])
			out.Targets = append(out.Targets, b.Targets[r][from:s])
			from = s
		}
	}
	return out
}

// Plain reports whether every row is full and holds one document: the
// layout of an ordinary [B,T] batch, one piece.
func (l Layout) Plain() bool {
	for b, n := range l.Lens {
		if n != l.T || (l.Starts != nil && len(l.Starts[b]) > 0) {
			return false
		}
	}
	return true
}

// Piece is a rectangle of a layout, rows [Row, Row+Rows) at positions
// [Start, Start+Len), over which the recurrent state runs without a reset:
// a document, a whole sequence, or (Pad) the padding after a sequence.
type Piece struct {
	Row, Rows  int
	Start, Len int
	// Pad marks padding: what a model computes there is thrown away.
	Pad bool
}

// Pieces cuts the layout into its pieces, row by row and in order of
// position; consecutive full rows without starts make one piece.
func (l Layout) Pieces() []Piece { return l.pieces(true) }

// RowPieces is Pieces with every row a piece of its own (or several): for
// rows that must not run together, such as sequences continuing states at
// different positions.
func (l Layout) RowPieces() []Piece { return l.pieces(false) }

// pieces cuts the layout into pieces, joining consecutive full rows
// without starts when join is set.
func (l Layout) pieces(join bool) []Piece {
	var out []Piece
	for b, n := range l.Lens {
		var starts []int
		if l.Starts != nil {
			starts = l.Starts[b]
		}
		if n == l.T && len(starts) == 0 {
			if k := len(out) - 1; join && k >= 0 && out[k].Start == 0 && out[k].Len == l.T && out[k].Row+out[k].Rows == b {
				out[k].Rows++
			} else {
				out = append(out, Piece{Row: b, Rows: 1, Len: l.T})
			}
			continue
		}
		from := 0
		for _, s := range append(starts, n) {
			out = append(out, Piece{Row: b, Rows: 1, Start: from, Len: s - from})
			from = s
		}
		if n < l.T {
			out = append(out, Piece{Row: b, Rows: 1, Start: n, Len: l.T - n, Pad: true})
		}
	}
	return out
}

// Mask returns, for each of the B*T positions, 1 where a row holds a token
// and 0 at its padding.
func (l Layout) Mask() []float32 {
	mask := make([]float32, len(l.Lens)*l.T)
	for b, n := range l.Lens {
		for t := range n {
			mask[b*l.T+t] = 1
		}
	}
	return mask
}

// Padded returns rows of T tokens: each row of ids followed by pad.
func (l Layout) Padded(ids [][]int32, pad int32) [][]int32 {
	out := make([][]int32, len(ids))
	for b, seq := range ids {
		row := make([]int32, l.T)
		copy(row, seq)
		for t := len(seq); t < l.T; t++ {
			row[t] = pad
		}
		out[b] = row
	}
	return out
}

// Ragged reports whether ids holds sequences of different lengths.
func Ragged(ids [][]int32) bool {
	for _, seq := range ids {
		if len(seq) != len(ids[0]) {
			return true
		}
	}
	return false
}

// ForwardEach implements Forward of sequences of different lengths for any
// model: each group of sequences of one length runs as one batch, and the
// logits are gathered into [B,T,V] (T the longest), zero past each
// sequence's end, on the backend of the first group's logits.
func ForwardEach(ctx context.Context, m Model, ids [][]int32, f Form) (_ Tensor, err error) {
	defer Recover(&err)
	l, err := LayoutOf(ids)
	if err != nil {
		return nil, err
	}
	byLen := map[int][]int{}
	var lens []int
	for b, n := range l.Lens {
		if byLen[n] == nil {
			lens = append(lens, n)
		}
		byLen[n] = append(byLen[n], b)
	}
	slices.Sort(lens)
	var out Tensor
	for _, n := range lens {
		rows := byLen[n]
		group := make([][]int32, len(rows))
		for i, b := range rows {
			group[i] = ids[b]
		}
		logits, err := m.Forward(ctx, group, f)
		if err != nil {
			return nil, err
		}
		be := logits.Backend()
		V := logits.Shape()[2]
		if out == nil {
			out = be.Alloc(F32, len(ids), l.T, V)
		}
		row := be.Alloc(F32, 1, n, V)
		full := be.Alloc(F32, 1, l.T, V)
		for i, b := range rows {
			be.Slice(row, logits, 0, i)
			be.SetSlice(full, row, 1, 0)
			be.SetSlice(out, full, 0, b)
		}
		be.Free(row)
		be.Free(full)
		be.Free(logits)
	}
	return out, nil
}
