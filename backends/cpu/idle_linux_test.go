package cpu

import (
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/densessm/densessm/api"
)

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPoolIdleCostsNothing checks that a process holding a backend whose
// workers have run a kernel uses next to no CPU while it waits: once their
// spin has run out the workers block, with no timer or polling to wake
// them. A pool that kept looking for work would use about 300 ms of CPU
// per worker over the 300 ms window; the bound is 20 ms, and the least of
// three tries is taken, so a loaded machine does not fail it.
func TestPoolIdleCostsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("sleeps about a second")
	}
	const window, bound = 300 * time.Millisecond, 20 * time.Millisecond
	be := New(api.BackendOptions{Threads: 2})
	r := rand.New(rand.NewPCG(41, 42))
	x, w, dst := randT(be, r, -1, 1, 64, 256), randT(be, r, -1, 1, 256, 256), be.Alloc(api.F32, 64, 256)
	runtime.GC() // no collection left over from earlier tests
	best := time.Duration(1 << 62)
	for range 3 {
		be.MatMul(dst, x, w, false, false, 1, 0)
		start := cpuTime(t)
		time.Sleep(window)
		best = min(best, cpuTime(t)-start)
	}
	t.Logf("%v of CPU over %v idle (least of 3): %.2f ms per second", best, window, float64(best)/float64(window)*1000)
	if best > bound {
		t.Errorf("the process used %v of CPU over %v idle, want at most %v", best, window, bound)
	}
}
