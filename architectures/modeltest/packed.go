package modeltest

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// PackedTol is the largest relative error CheckPacked allows between a
// packed or variable-length batch and its sequences run alone: float32
// sums in another order.
const PackedTol = 2e-5

// CheckPacked checks a model whose Info.Packed is set: Forward of
// sequences of different lengths, in every form m supports, gives each
// sequence the logits it has alone (PackedTol) and zeros past its end; and,
// when m is trainable, LossAndGrad of a batch with rows of different
// lengths and document starts gives the loss and gradients of its
// documents run alone, weighted by their tokens.
func CheckPacked(t *testing.T, m api.Model) {
	t.Helper()
	ctx := context.Background()
	if !m.Info().Packed {
		t.Fatalf("%s: Info.Packed is false", m.Info().Arch)
	}
	V := m.Config().Vocab()
	r := rand.New(rand.NewPCG(7, 8))
	lens := []int{9, 3, 9, 6}
	ids := make([][]int32, len(lens))
	for b, n := range lens {
		ids[b] = RandomIDs(r, 1, n, V)[0]
	}
	for _, f := range []api.Form{{}, {Mode: api.Chunkwise, Chunk: 4}, {Mode: api.Recurrent}} {
		if !m.Info().Supports(f.Mode) {
			continue
		}
		got := Values(t, f.Mode.String()+" packed", must(m.Forward(ctx, ids, f)), api.Shape{len(lens), 9, V})
		for b, seq := range ids {
			alone := Values(t, "alone", must(m.Forward(ctx, [][]int32{seq}, f)), api.Shape{1, len(seq), V})
			row := got[b*9*V : (b+1)*9*V]
			CheckLogits(t, f.Mode.String()+" sequence of a variable-length batch", row[:len(seq)*V], alone, PackedTol)
			for i, v := range row[len(seq)*V:] {
				if v != 0 {
					t.Fatalf("%s: padding logit %d of sequence %d is %g, want 0", f.Mode, i, b, v)
				}
			}
		}
	}
	checkRaggedPrefill(t, m, ids)
	if tr, ok := m.(api.Trainable); ok && m.Info().Trainable {
		checkPackedGrads(t, tr, r)
	}
}

// checkRaggedPrefill checks Prefill of sequences of different lengths
// (ids) from an empty state, a Step after it, a second Prefill of other
// lengths and a copy of the state: every sequence's logits are those of
// its tokens so far run alone, and the state counts each one's tokens.
func checkRaggedPrefill(t *testing.T, m api.Model, ids [][]int32) {
	t.Helper()
	ctx := context.Background()
	V := m.Config().Vocab()
	r := rand.New(rand.NewPCG(9, 10))
	B := len(ids)
	s := must(m.NewState(B))
	defer s.Close()
	seqs := make([][]int32, B)
	// check compares logits [B,T,V] of the tokens just fed (news) with
	// each sequence's so far run alone.
	check := func(what string, logits api.Tensor, news [][]int32) {
		t.Helper()
		T := 0
		for b, n := range news {
			seqs[b] = append(seqs[b], n...)
			T = max(T, len(n))
		}
		got := Values(t, what, logits, api.Shape{B, T, V})
		for b, n := range news {
			alone := Values(t, "alone", must(m.Forward(ctx, [][]int32{seqs[b]}, api.Form{})), api.Shape{1, len(seqs[b]), V})
			CheckLogits(t, what, got[b*T*V:][:len(n)*V], alone[(len(seqs[b])-len(n))*V:], PackedTol)
		}
	}
	check("prefill of different lengths", must(m.Prefill(ctx, s, ids, api.Form{})), ids)
	next := RandomIDs(r, B, 1, V)
	step := make([]int32, B)
	for b := range step {
		step[b] = next[b][0]
	}
	logits := must(m.Step(ctx, s, step))
	check("step after a prefill of different lengths", logits.Backend().Reshape(logits, B, 1, V), next)
	more := [][]int32{RandomIDs(r, 1, 2, V)[0], RandomIDs(r, 1, 5, V)[0], RandomIDs(r, 1, 1, V)[0], RandomIDs(r, 1, 3, V)[0]}[:B]
	check("second prefill of different lengths", must(m.Prefill(ctx, s, more, api.Form{})), more)
	for b, n := range api.StateLens(s) {
		if n != len(seqs[b]) {
			t.Fatalf("the state counts %v tokens; sequence %d has %d", api.StateLens(s), b, len(seqs[b]))
		}
	}
	if !m.Info().Snapshots {
		return
	}
	// A copy keeps each sequence's position and continues exactly.
	c := must(api.CopyState(ctx, m, s))
	defer c.Close()
	if !slices.Equal(api.StateLens(c), api.StateLens(s)) {
		t.Fatalf("a copy of a state at %v tokens is at %v", api.StateLens(s), api.StateLens(c))
	}
	want := slices.Clone(api.Float32s(must(m.Step(ctx, s, step))))
	if got := api.Float32s(must(m.Step(ctx, c, step))); !slices.Equal(got, want) {
		t.Fatalf("a copy of a state of different lengths continues differently")
	}
}

// checkPackedGrads checks LossAndGrad of a packed batch against its
// documents one at a time.
func checkPackedGrads(t *testing.T, m api.Trainable, r *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	V := m.Config().Vocab()
	lens := []int{10, 10, 7}
	batch := api.Batch{Starts: [][]int{{4, 5}, nil, {3}}}
	for _, n := range lens {
		batch.Inputs = append(batch.Inputs, RandomIDs(r, 1, n, V)[0])
		batch.Targets = append(batch.Targets, RandomIDs(r, 1, n, V)[0])
	}
	batch.Targets[1][2] = api.IgnoreIndex
	m.ZeroGrad()
	loss := must(m.LossAndGrad(ctx, batch))
	got := gradValues(t, m)

	want := make([][]float32, len(got))
	var wantLoss float64
	var total int
	type doc struct{ in, tg []int32 }
	var docs []doc
	for b, row := range batch.Inputs {
		from := 0
		for _, s := range append(append([]int(nil), batch.Starts[b]...), len(row)) {
			docs = append(docs, doc{row[from:s], batch.Targets[b][from:s]})
			from = s
		}
	}
	counted := func(tg []int32) int {
		n := 0
		for _, id := range tg {
			if id != api.IgnoreIndex {
				n++
			}
		}
		return n
	}
	for _, d := range docs {
		total += counted(d.tg)
	}
	for _, d := range docs {
		m.ZeroGrad()
		l := must(m.LossAndGrad(ctx, api.Batch{Inputs: [][]int32{d.in}, Targets: [][]int32{d.tg}}))
		w := float64(counted(d.tg)) / float64(total)
		wantLoss += l * w
		for i, g := range gradValues(t, m) {
			if want[i] == nil {
				want[i] = make([]float32, len(g))
			}
			for j, v := range g {
				want[i][j] += float32(w) * v
			}
		}
	}
	if e := RelErr([]float32{float32(loss)}, []float32{float32(wantLoss)}); e > PackedTol {
		t.Fatalf("packed loss %.8g, documents alone %.8g: relative error %.3g", loss, wantLoss, e)
	}
	names := m.Grads()
	for i := range got {
		if e := RelErr(got[i], want[i]); e > 10*PackedTol {
			t.Fatalf("gradient of %s: packed against documents alone: relative error %.3g > %g", names[i].Name, e, 10*PackedTol)
		}
	}
	m.ZeroGrad()
}

// gradValues returns copies of m's gradients, in the order of Grads.
func gradValues(t *testing.T, m api.Trainable) [][]float32 {
	var out [][]float32
	for _, g := range m.Grads() {
		out = append(out, append([]float32(nil), api.Float32s(g.Value)...))
	}
	return out
}
