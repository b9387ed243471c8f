package api

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

func snapOf(vals ...float32) StateSnapshot {
	data := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return StateSnapshot{Arch: "a", ConfigHash: "c", WeightsHash: "w", Batch: 1, Tokens: 3,
		Tensors: []HostTensor{{Name: "s", DType: F32, Shape: Shape{len(vals)}, Data: data}}}
}

// TestStateSnapshotMaxDiff checks the largest difference, NaN as infinite,
// and the refusal of snapshots that do not hold the same tensors.
func TestStateSnapshotMaxDiff(t *testing.T) {
	a, b := snapOf(1, 2, 3), snapOf(1, 2.5, 2)
	if d, err := a.MaxDiff(b); err != nil || d != 1 {
		t.Errorf("MaxDiff = %v, %v; want 1", d, err)
	}
	if d, err := a.MaxDiff(snapOf(1, float32(math.NaN()), 3)); err != nil || !math.IsInf(d, 1) {
		t.Errorf("MaxDiff with a NaN = %v, %v; want +Inf", d, err)
	}
	for name, o := range map[string]StateSnapshot{"longer": snapOf(1, 2, 3, 4), "later": func() StateSnapshot { s := snapOf(1, 2, 3); s.Tokens++; return s }()} {
		if _, err := a.MaxDiff(o); !errors.Is(err, ErrShape) {
			t.Errorf("%s: error %v, want ErrShape", name, err)
		}
	}
}

// TestStateSnapshotIdentity checks that CheckIdentity names what differs.
func TestStateSnapshotIdentity(t *testing.T) {
	id := snapOf()
	if err := snapOf(1).CheckIdentity(id); err != nil {
		t.Fatal(err)
	}
	for field, edit := range map[string]func(*StateSnapshot){
		"not of this":   func(s *StateSnapshot) { s.Arch = "b" },
		"configuration": func(s *StateSnapshot) { s.ConfigHash = "d" },
		"other weights": func(s *StateSnapshot) { s.WeightsHash = "x" },
	} {
		s := snapOf(1)
		edit(&s)
		if err := s.CheckIdentity(id); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %v", field, err)
		}
	}
}
