package cpu

import (
	"errors"
	"testing"

	"github.com/densessm/densessm/api"
)

// TestAllocPastBudget checks that a tensor that would take the process past
// the backend's memory budget is an ErrOutOfMemory error, not an abort of
// the Go runtime, and that tensors within the budget are allocated.
func TestAllocPastBudget(t *testing.T) {
	b := New(api.BackendOptions{Threads: 1, MaxMemory: heapBytes() + 256<<20})
	if got := b.MaxMemory(); got <= 0 {
		t.Fatalf("MaxMemory() = %d", got)
	}
	alloc := func(n int) (err error) {
		defer api.Recover(&err)
		b.Alloc(api.F32, n)
		return nil
	}
	if err := alloc(16 << 20); err != nil { // 64 MiB
		t.Fatalf("64 MiB within a 256 MiB budget: %v", err)
	}
	err := alloc(1 << 30) // 4 GiB
	if !errors.Is(err, api.ErrOutOfMemory) {
		t.Fatalf("4 GiB past a 256 MiB budget: %v", err)
	}
	if d := New(api.BackendOptions{}); d.MaxMemory() <= 0 {
		t.Logf("no memory figure on this system: budget %d", d.MaxMemory())
	}
}

func TestBackendOptionsValidate(t *testing.T) {
	for _, o := range []api.BackendOptions{{Threads: -1}, {MaxMemory: -1}} {
		if _, err := api.NewBackend("cpu", o); !errors.Is(err, api.ErrConfig) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
