package nn

import "github.com/densessm/densessm/api"

// MapPieces runs f on each piece of a batch: every non-nil x of xs (each
// [B,T,...]) is cut to the piece's rows and positions, f returns the
// piece's outputs (each [rows,len,...], or nil), and each output is joined
// back into [B,T,...] in the pieces' order (api.Layout.Pieces). With one
// piece, f runs on xs as they are. It is how a model's sequence mixers
// (convolutions, scans, retention) keep to the pieces of a packed or
// variable-length batch while everything position-wise runs on the whole
// batch at once.
func (t *Tape) MapPieces(pieces []api.Piece, xs []*Var, f func(p api.Piece, xs []*Var) []*Var) []*Var {
	if len(pieces) == 1 {
		return f(pieces[0], xs)
	}
	var B, T int
	for _, x := range xs {
		if x != nil {
			B, T = x.Shape()[0], x.Shape()[1]
			break
		}
	}
	var groups [][]*Var // per output, the joined rows of each row group
	var cur [][]*Var    // per output, the current row group's pieces
	rows := make([]*Var, len(xs))
	flush := func() {
		for o, parts := range cur {
			var joined *Var
			if parts[0] != nil {
				joined = parts[0]
				if len(parts) > 1 {
					joined = t.Concat(1, parts...)
				}
			}
			groups[o] = append(groups[o], joined)
		}
		cur = nil
	}
	for i, p := range pieces {
		if i == 0 || p.Row != pieces[i-1].Row {
			if cur != nil {
				flush()
			}
			for j, x := range xs {
				rows[j] = x
				if x != nil && p.Rows != B {
					rows[j] = t.Slice(x, 0, p.Row, p.Rows)
				}
			}
		}
		cut := make([]*Var, len(xs))
		for j, x := range rows {
			cut[j] = x
			if x != nil && p.Len != T {
				cut[j] = t.Slice(x, 1, p.Start, p.Len)
			}
		}
		outs := f(p, cut)
		if groups == nil {
			groups = make([][]*Var, len(outs))
		}
		if cur == nil {
			cur = make([][]*Var, len(outs))
		}
		for o, y := range outs {
			cur[o] = append(cur[o], y)
		}
	}
	flush()
	out := make([]*Var, len(groups))
	for o, g := range groups {
		if g[0] == nil {
			continue
		}
		out[o] = g[0]
		if len(g) > 1 {
			out[o] = t.Concat(0, g...)
		}
	}
	return out
}

// PiecesOf returns the pieces of lay (api.Layout.Pieces) for a batch of
// shape [B,T,...]: one piece of everything when lay is zero or plain.
func PiecesOf(shape api.Shape, lay api.Layout) []api.Piece {
	if lay.Lens == nil || lay.Plain() {
		return []api.Piece{{Rows: shape[0], Len: shape[1]}}
	}
	return lay.Pieces()
}

// MaskPadding zeroes, in place, the rows of logits [B,T,V] at lay's
// padding (nothing when lay is zero or plain) and returns logits.
func MaskPadding(b api.Backend, logits api.Tensor, lay api.Layout) api.Tensor {
	if lay.Lens == nil || lay.Plain() {
		return logits
	}
	s := logits.Shape()
	mask := api.FromFloat32s(b, lay.Mask(), s[0], s[1], 1)
	b.Binary(api.OpMul, logits, logits, mask)
	b.Free(mask)
	return logits
}

// Broadcast returns x [1,...] repeated n times along the first axis,
// [n,...]; its gradient sums over the copies. An initial state that every
// sequence of a batch starts from is broadcast this way.
func (t *Tape) Broadcast(x *Var, n int) *Var {
	s := x.Shape().Clone()
	if len(s) == 0 || s[0] != 1 {
		api.Panicf(api.ErrShape, "nn.Broadcast of %v: want a first axis of 1", s)
	}
	if n == 1 {
		return x
	}
	s[0] = n
	return t.Add(t.zeros(s...), x)
}
