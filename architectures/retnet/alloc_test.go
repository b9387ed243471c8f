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

// TestEstimateBoundsAllocations checks that the estimates bound what
// Forward, Prefill, LossAndGrad and a State allocate, and reports how
// loose they are (go test -v -run TestEstimateBoundsAllocations
// ./architectures/retnet/).
func TestEstimateBoundsAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations of several passes")
	}
	b := cpu.New(api.BackendOptions{Threads: 2})
	cfgs := estimateConfigs()
	for _, name := range []string{"retnet", "retnet-tied-scaled", "denseretnet-m0", "denseretnet-m2",
		"denseretnet-m4-5layers", "denseretnet-pad-tied", "denseretnet-knobs5"} {
		c := cfgs[name]
		m, err := New(c, b, 1)
		if err != nil {
			t.Fatal(err)
		}
		modeltest.MeasureMemory(t, m, c.EstimateMemory(), 2, 64).CheckTight(t, name, 4)
	}
}
