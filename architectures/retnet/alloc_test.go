//go:build !race

package retnet

import (
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/modeltest"
	"github.com/densessm/densessm/backends/cpu"
)

// TestStepAllocatesNothing checks that a decode step allocates nothing once
// the state's buffers exist, for every variant, with one and two threads.
func TestStepAllocatesNothing(t *testing.T) {
	modeltest.CheckStepsAllocateNothing(t, variants(),
		cpu.New(api.BackendOptions{Threads: 1}), cpu.New(api.BackendOptions{Threads: 2}))
}

// TestEstimateBoundsAllocations checks that the estimates bound what
// Forward, Prefill, LossAndGrad and a State allocate, and reports how
// loose they are (go test -v -run TestEstimateBoundsAllocations
// ./architectures/retnet/).
func TestEstimateBoundsAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations of several passes")
	}
	// Every pass's tensors freshly allocated, as when nothing is freed: the
	// estimates bound that, and the buffer pool would hide it.
	defer cpu.SetPoolLimit(cpu.SetPoolLimit(0))
	modeltest.CheckEstimatesBound(t, estimateConfigs(), cpu.New(api.BackendOptions{Threads: 2}),
		"retnet", "retnet-tied-scaled", "denseretnet-m0", "denseretnet-m2",
		"denseretnet-m4-5layers", "denseretnet-pad-tied", "denseretnet-knobs5")
}
