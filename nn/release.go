package nn

import (
	"slices"

	"github.com/densessm/densessm/api"
)

// Freeing a pass's activations early.
//
// A tape that has been marked (Mark) knows which storage it allocated: each
// op output whose value the op allocated owns it, and any other op output
// (a Reshape view, or the joined outputs of a reference kernel) records the
// Vars whose storage it may share. Release(mark, keep...) then frees, with
// the backend's Free, the values of the outputs made since mark, except
// those that the kept Vars own or share; the kept ones stay owned by the
// tape as though made at mark. On the CPU backend Free puts the storage
// back in a pool that the next Alloc of that size takes from, so a forward
// pass that releases each layer's intermediates as it goes runs in the
// memory of one layer, and the next pass in the same memory again.
//
// The caller names what it still needs; everything else made since mark
// must be dead. A value read after it was released panics with
// api.ErrInternal (Value, and ops given a released Var). Only tensors the
// tape allocated as op outputs are freed: parameters, NewVar values, an
// op's temporaries and gradients are not the tape's to free.
//
// On a recording tape, Release frees nothing while ops are recorded (their
// backward closures read their inputs and outputs); after Backward, which
// leaves none, Release(mark) frees the activations of the step.

// Mark starts tracking the storage the tape allocates, if it does not yet,
// and returns the position that Release frees back to: the op outputs
// made after it.
func (t *Tape) Mark() int {
	t.tracking = true
	return len(t.owned)
}

// Release frees the values of the op outputs made since mark that keep
// neither are nor share storage with; see Mark. Nil entries of keep are
// ignored. mark must come from Mark on this tape, and no Release since
// may have gone below it.
func (t *Tape) Release(mark int, keep ...*Var) {
	if !t.tracking || mark < 0 || mark > len(t.owned) {
		api.Panicf(api.ErrInternal, "nn: Release(%d) of a tape that owns %d values (call Mark first)", mark, len(t.owned))
	}
	if t.record && len(t.nodes) > 0 {
		return
	}
	clear(t.fresh)
	t.fresh = t.fresh[:0]
	pin := func(on bool) { // only this tape's Vars are marked: leaves may be shared by tapes on other goroutines
		for _, k := range keep {
			if k == nil {
				continue
			}
			k.checkLive()
			if k.tape == t {
				k.pinned = on
			}
			for _, o := range k.shares {
				o.pinned = on
			}
		}
	}
	pin(true)
	n := mark
	for _, v := range t.owned[mark:] {
		if v.pinned {
			t.owned[n] = v
			n++
			continue
		}
		v.released = true
		t.b.Free(v.value)
	}
	clear(t.owned[n:])
	t.owned = t.owned[:n]
	pin(false)
}

// own records, for a tape that tracks storage, which of outs own their
// values (those allocated since the last op) and which may share their
// inputs' storage, and checks that no input has been released.
func (t *Tape) own(outs, ins []*Var) {
	var shares []*Var // this tape's Vars whose storage an output that is not fresh may share
	for _, in := range ins {
		if in == nil {
			continue
		}
		in.checkLive()
		switch {
		case in.shares != nil:
			shares = append(shares, in.shares...)
		case in.tape == t:
			shares = append(shares, in)
		}
	}
	for _, o := range outs {
		if i := slices.Index(t.fresh, o.value); i >= 0 {
			t.owned = append(t.owned, o)
			t.fresh[i] = nil
		} else {
			o.shares = shares
		}
	}
	clear(t.fresh)
	t.fresh = t.fresh[:0]
}

// checkLive panics when v's value, or storage it shares, was released.
func (v *Var) checkLive() {
	if v.released {
		api.Panicf(api.ErrInternal, "nn: use of a Var whose value Tape.Release freed")
	}
	for _, o := range v.shares {
		if o.released {
			api.Panicf(api.ErrInternal, "nn: use of a view of a Var whose value Tape.Release freed")
		}
	}
}
