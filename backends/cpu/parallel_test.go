package cpu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/densessm/densessm/api"
)

// poolChildEnv marks the process TestPoolSizedByThreads starts to check a
// pool no other test has used.
const poolChildEnv = "DENSESSM_TEST_POOL_CHILD"

// TestPoolSizedByThreads checks, in a fresh process, that the pool starts
// no worker before a kernel splits work, then as many as the widest
// backend that has split work needs (its Threads less one), whatever the
// number of CPUs; and that DENSESSM_CPU_SPIN sets the starting spin.
func TestPoolSizedByThreads(t *testing.T) {
	if os.Getenv(poolChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPoolSizedByThreads$", "-test.v")
		cmd.Env = append(os.Environ(), poolChildEnv+"=1", spinEnv+"=200us")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child process: %v\n%s", err, out)
		}
		return
	}
	want := func(n int) {
		t.Helper()
		if got := workers.Load(); int(got) != n {
			t.Fatalf("%d workers, want %d", got, n)
		}
	}
	split := func(b *Backend) {
		t.Helper()
		var mu sync.Mutex
		parts := 0
		b.parallelGrain(b.threads, 1, func(lo, hi int) { mu.Lock(); parts++; mu.Unlock() })
		if parts != b.threads {
			t.Fatalf("%d parts, want %d", parts, b.threads)
		}
	}
	wide, three, two := New(api.BackendOptions{Threads: 9}), New(api.BackendOptions{Threads: 3}), New(api.BackendOptions{Threads: 2})
	New(api.BackendOptions{}).parallelGrain(1, 1, func(lo, hi int) {}) // one part: runs on the caller
	want(0)
	split(three)
	want(2)
	split(two)
	want(2)
	split(wide)
	want(8)
	if d := SetWorkerSpin(0); d != 200*time.Microsecond {
		t.Errorf("the spin from %s=200us is %v", spinEnv, d)
	}
	split(wide) // the workers park at once
	if d := SetWorkerSpin(defaultWorkerSpin); d != 0 {
		t.Errorf("spin %v after SetWorkerSpin(0)", d)
	}
}

// TestParallelSpinChanges runs products at two thread counts on several
// goroutines while another changes the worker spin, checking that every
// result has the bits of the same product computed alone (run it with
// -race).
func TestParallelSpinChanges(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	backends := []*Backend{New(api.BackendOptions{Threads: 2}), New(api.BackendOptions{Threads: 3})}
	x, w := randT(backends[0], r, -1, 1, 48, 256), randT(backends[0], r, -1, 1, 256, 192)
	want := make([][]float32, len(backends))
	for i, be := range backends {
		dst := be.Alloc(api.F32, 48, 192).(*Tensor)
		be.MatMul(dst, x, w, false, false, 1, 0)
		want[i] = dst.f32
	}
	defer SetWorkerSpin(SetWorkerSpin(0))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			SetWorkerSpin([]time.Duration{0, 50 * time.Microsecond, defaultWorkerSpin}[i%3])
			time.Sleep(100 * time.Microsecond)
		}
	})
	var callers sync.WaitGroup
	for g := range 4 {
		callers.Go(func() {
			be := backends[g%len(backends)]
			dst := be.Alloc(api.F32, 48, 192).(*Tensor)
			for i := range 50 {
				be.MatMul(dst, x, w, false, false, 1, 0)
				checkSameBits(t, fmt.Sprintf("goroutine %d, call %d, threads=%d", g, i, be.threads), dst.f32, want[g%len(backends)])
				if i%10 == 9 {
					time.Sleep(time.Millisecond) // let the workers park
				}
			}
		})
	}
	callers.Wait()
	close(stop)
	wg.Wait()
}
