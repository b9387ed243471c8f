package wire

import (
	"errors"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// TestLastRows checks that LastRows keeps each sequence's last row, and
// refuses what is not [B,T,V] logits.
func TestLastRows(t *testing.T) {
	b := cpu.New(api.BackendOptions{Threads: 1})
	vals := make([]float32, 2*3*4)
	for i := range vals {
		vals[i] = float32(i)
	}
	got, err := LastRows(b.WrapFloat32s(vals, 2, 3, 4))
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{8, 9, 10, 11, 20, 21, 22, 23}; !got.Shape().Equal(api.Shape{2, 4}) || !slices.Equal(api.Float32s(got), want) {
		t.Fatalf("LastRows = %v %v", got.Shape(), api.Float32s(got))
	}
	for _, bad := range []api.Tensor{b.WrapFloat32s(vals, 6, 4), b.Alloc(api.F32, 2, 0, 4)} {
		if _, err := LastRows(bad); !errors.Is(err, api.ErrShape) {
			t.Errorf("%v: %v, want ErrShape", bad.Shape(), err)
		}
	}
}
