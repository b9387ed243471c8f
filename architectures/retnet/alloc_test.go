//go:build !race

package retnet

import (
	"fmt"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestStepAllocatesNothing checks that a decode step allocates nothing once
// the state's buffers exist, for every variant, with one and two threads.
func TestStepAllocatesNothing(t *testing.T) {
	for name, cfg := range variants() {
		for _, threads := range []int{1, 2} {
			m, err := New(cfg, cpu.New(api.BackendOptions{Threads: threads}), 1)
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckStepAllocs(t, fmt.Sprintf("%s, %d threads", name, threads), m, 2)
		}
	}
}
