package cuda

import (
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestConstF32 checks the device constants: the same values give the same
// tensor, uploaded once; past maxConstBytes a list is uploaded for the
// call and freed by release; Close frees the kept ones.
func TestConstF32(t *testing.T) {
	b := newFake(t, Options{})
	uploads := func() int { return fakeOf(b).launched()["cuMemcpyHtoDAsync"] }
	a, release := b.constF32([]float32{1, 2, 3})
	release()
	n := uploads()
	a2, release := b.constF32([]float32{1, 2, 3})
	release()
	if a2 != a || uploads() != n || !slices.Equal(api.Float32s(a), []float32{1, 2, 3}) {
		t.Fatalf("the same constants again: %v (uploads %d, then %d)", api.Float32s(a2), n, uploads())
	}
	big := make([]float32, maxConstBytes/4) // with a's 12 bytes, past the cap
	c, release := b.constF32(big)
	if b.constBytes != 12 || len(b.consts) != 1 {
		t.Fatalf("a list past the cap was kept: %d bytes, %d lists", b.constBytes, len(b.consts))
	}
	release()
	if !c.buf.blk.freed.Load() {
		t.Fatal("release did not free a list past the cap")
	}
	b.freeConsts()
	if !a.buf.blk.freed.Load() || len(b.consts) != 0 || b.constBytes != 0 {
		t.Fatal("freeConsts left constants")
	}
}
