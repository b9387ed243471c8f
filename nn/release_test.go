package nn

import (
	"math"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// freeLog records a backend's Frees: it fills every tensor it is asked to
// free with NaN before freeing it, and counts the Frees of each tensor, so
// that a value freed while still needed shows up as NaN and a double free
// as a count of 2.
type freeLog struct {
	freed map[api.Tensor]int
}

func (f *freeLog) free(b api.Backend, t api.Tensor) {
	f.freed[t]++
	if t.DType() == api.F32 && f.freed[t] == 1 {
		b.Fill(t, float32(math.NaN()))
	}
	b.Free(t)
}

// was reports whether v's value was freed, and fails t on a double free.
func (f *freeLog) was(t *testing.T, v *Var) bool {
	t.Helper()
	n := f.freed[v.value]
	if n > 1 {
		t.Fatalf("a value was freed %d times", n)
	}
	return n == 1
}

// logged is a backend with Kernels alone whose Frees a freeLog records;
// loggedCPU is the CPU backend, fused kernels and all, likewise.
type (
	logged struct {
		api.Backend
		*freeLog
	}
	loggedCPU struct {
		*cpu.Backend
		*freeLog
	}
)

func (l logged) Free(t api.Tensor)    { l.free(l.Backend, t) }
func (l loggedCPU) Free(t api.Tensor) { l.free(l.Backend, t) }

// newFreeLog returns b with its Frees recorded, keeping the CPU backend's
// fused kernels.
func newFreeLog(b api.Backend) (api.Backend, *freeLog) {
	f := &freeLog{freed: map[api.Tensor]int{}}
	if c, ok := b.(*cpu.Backend); ok {
		return loggedCPU{c, f}, f
	}
	return logged{b, f}, f
}

// TestReleaseFreesWhatIsNotKept checks what Release frees: the op outputs
// made since the mark, except a kept Var's value and the storage a kept
// view shares; the kept stay owned and a later Release frees them.
func TestReleaseFreesWhatIsNotKept(t *testing.T) {
	r := newRand(1)
	b, log := newFreeLog(newBackend())
	tp := NewInferenceTape(b)
	x := leaf(b, r, -1, 1, 4, 6) // a leaf: never the tape's to free
	before := tp.Mark()
	early := tp.Unary(api.OpExp, x)
	mark := tp.Mark()
	a := tp.Unary(api.OpExp, x)
	view := tp.Reshape(a, 6, 4) // shares a's storage
	c := tp.Add(a, early)
	d := tp.Scale(c, 2)
	want := api.Float32s(a.Value())
	tp.Release(mark, view)
	if !log.was(t, c) || !log.was(t, d) {
		t.Error("outputs made after the mark and not kept were not freed")
	}
	if log.was(t, a) || log.was(t, early) || log.was(t, x) {
		t.Error("a kept view's storage, an output made before the mark or a leaf was freed")
	}
	if got := api.Float32s(view.Value()); !equalBits(got, want) {
		t.Errorf("the kept view changed: %v, want %v", got, want)
	}
	mustPanic(t, api.ErrInternal, func() { d.Value() })
	mustPanic(t, api.ErrInternal, func() { tp.Add(c, x) })
	e := tp.Mul(view, view) // the kept view goes on being usable
	tp.Release(before, e)
	if !log.was(t, a) || !log.was(t, early) || log.was(t, e) {
		t.Error("Release of the earlier mark: the kept a and early should be freed now, e kept")
	}
	mustPanic(t, api.ErrInternal, func() { view.Value() })
	if got := api.Float32s(e.Value()); math.IsNaN(float64(got[0])) {
		t.Error("the kept e was overwritten")
	}
	for _, v := range []*Var{c, d, a, early} {
		log.was(t, v) // no double frees
	}
	mustPanic(t, api.ErrInternal, func() { NewInferenceTape(b).Release(0) }) // no Mark
}

// TestReleaseOnRecordingTape checks that Release frees nothing while the
// tape holds ops to differentiate, and the step's activations after
// Backward, with the same gradients as without Release.
func TestReleaseOnRecordingTape(t *testing.T) {
	grads := func(release bool) (grad []float32, fl *freeLog) {
		r := newRand(2)
		b, log := newFreeLog(newBackend())
		w := leaf(b, r, -1, 1, 8, 5)
		x := constant(b, r, 3, 5)
		tp := NewTape(b)
		mark := tp.Mark()
		h := tp.Unary(api.OpSilu, tp.Linear(x, w, nil))
		if release {
			tp.Release(mark) // ops recorded: frees nothing
			if len(log.freed) != 0 {
				t.Fatalf("Release freed %d tensors of a tape with ops to differentiate", len(log.freed))
			}
		}
		loss := tp.Sum(tp.Mul(h, h))
		tp.Backward(loss)
		if release {
			tp.Release(mark)
			for _, v := range []*Var{h, loss} {
				if !log.was(t, v) {
					t.Error("an activation was not freed after Backward")
				}
			}
		}
		return api.Float32s(w.Grad()), log
	}
	plain, _ := grads(false)
	released, _ := grads(true)
	if !equalBits(plain, released) {
		t.Errorf("gradients differ with Release: %v, want %v", released, plain)
	}
}

// TestReleaseReferences runs the model-family ops on the CPU backend and
// on nn's references (whose outputs are views joined by asOneOp), keeps
// only their outputs, releases the rest and checks that the outputs are
// intact and that nothing was freed twice.
func TestReleaseReferences(t *testing.T) {
	forSequenceBackends(t, func(t *testing.T, be api.Backend) {
		r := newRand(3)
		b, log := newFreeLog(be)
		if _, fused := be.(api.ScanKernels); fused {
			if _, ok := b.(api.ScanKernels); !ok {
				t.Fatal("the logged CPU backend hides the fused kernels")
			}
		}
		B, T, E, N, H, dk, dv := 2, 7, 3, 4, 2, 4, 3
		xs := leaf(b, r, -1, 1, B, T, E)
		delta := leaf(b, r, 0.05, 1, B, T, E)
		a := leaf(b, r, -2, -0.2, E, N)
		bm, cm := leaf(b, r, -1, 1, B, T, N), leaf(b, r, -1, 1, B, T, N)
		q, k, v := leaf(b, r, -1, 1, B, H, T, dk), leaf(b, r, -1, 1, B, H, T, dk), leaf(b, r, -1, 1, B, H, T, dv)
		wc := leaf(b, r, -1, 1, E, 2)
		build := func(tp *Tape) []*Var {
			y, hT, hs := tp.SelectiveScan(ScanVars{X: tp.Scale(xs, 1), Delta: delta, A: a, Bm: bm, Cm: cm}, true, true)
			o, sT := tp.Retention(api.RetentionChunkwise, RetentionVars{Q: tp.Rotary(q, []float32{1, 0.5}, 0), K: k, V: v,
				Gamma: []float32{0.9, 0.5}, Chunk: 3}, true)
			conv := tp.CausalConv1d(xs, tp.Scale(wc, 1), nil, nil)
			return []*Var{y, hT, hs, o, sT, conv}
		}
		var want [][]float32
		for _, o := range build(NewInferenceTape(b)) {
			want = append(want, api.Float32s(o.Value()))
		}
		tp := NewInferenceTape(b)
		mark := tp.Mark()
		outs := build(tp)
		tp.Release(mark, outs...)
		for i, o := range outs {
			if got := api.Float32s(o.Value()); !equalBits(got, want[i]) {
				t.Errorf("output %d changed by Release (NaN: its storage was freed)", i)
			}
		}
		for tensor, n := range log.freed {
			if n > 1 {
				t.Fatalf("a %v tensor was freed %d times", tensor.Shape(), n)
			}
		}
		if len(log.freed) == 0 {
			t.Error("nothing was freed")
		}
	})
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
