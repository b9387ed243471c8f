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
		r := modeltest.MeasureMemory(t, m, c.EstimateMemory(), 2, 64)
		t.Logf("%-22s estimate/allocated: forward %.2f, prefill %.2f, train %.2f, state %.2f", name, r.Forward, r.Prefill, r.Train, r.State)
		for what, v := range map[string]float64{"forward": r.Forward, "prefill": r.Prefill, "train": r.Train, "state": r.State} {
			if v > 4 {
				t.Errorf("%s: %s estimate is %.2f times what it allocates", name, what, v)
			}
		}
	}
}
