//go:build !race

package retnet

import (
	"context"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// TestStepAllocatesNothing checks that a decode step allocates nothing once
// the state's buffers exist, for every variant, with one and two threads.
func TestStepAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range variants() {
		for _, threads := range []int{1, 2} {
			m, err := New(cfg, cpu.New(api.BackendOptions{Threads: threads}), 1)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := m.NewState(2)
			ids := []int32{3, 4}
			if _, err := m.Step(ctx, s, ids); err != nil { // warm-up makes the buffers
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(20, func() {
				if _, err := m.Step(ctx, s, ids); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s, %d threads: %.1f allocations per step", name, threads, allocs)
			}
		}
	}
}
