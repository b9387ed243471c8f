package cpu

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Kernels split their work into at most Threads contiguous parts of a fixed
// partition (the same n and thread count always give the same parts, so
// results are bit-reproducible) and hand the parts to a pool of worker
// goroutines shared by every backend (started when first needed, as many as
// the widest backend's Threads less one: see startWorkers). The caller runs
// the first part itself and, while it waits, runs queued parts too, so
// nested parallel calls cannot deadlock.
//
// Nothing here allocates once warm: a kernel on the decode path describes
// its work as a task value taken from a taskPool (a closure handed to
// another goroutine would be allocated on every call).

// minGrain is the least number of elements worth handing to a goroutine.
const minGrain = 1 << 14

// task is work over an index range [lo, hi).
type task interface {
	run(lo, hi int)
}

// funcTask adapts a closure to task, for kernels off the decode path.
type funcTask func(lo, hi int)

func (f funcTask) run(lo, hi int) { f(lo, hi) }

// taskPool recycles task values of one kernel so that passing them to the
// workers allocates nothing after the first calls.
type taskPool[T any] struct{ p sync.Pool }

func (tp *taskPool[T]) get() *T {
	if v := tp.p.Get(); v != nil {
		return v.(*T)
	}
	return new(T)
}

// put clears t (so it keeps no tensor alive) and returns it to the pool.
func (tp *taskPool[T]) put(t *T) {
	var zero T
	*t = zero
	tp.p.Put(t)
}

// job is one part of a parallel call, queued for the workers.
type job struct {
	t      task
	lo, hi int
	g      *group
}

// group tracks the queued parts of one parallel call.
type group struct {
	pending atomic.Int32
	done    chan struct{} // receives once, when the last queued part ends
	mu      sync.Mutex
	panic   any // the first panic of a part
}

var (
	groups = sync.Pool{New: func() any { return &group{done: make(chan struct{}, 1)} }}
	jobs   chan job      // queued parts; workers only poll it
	wake   chan struct{} // a token wakes one sleeping worker
	idle   atomic.Int32  // workers looking for parts: neither asleep nor running one

	workers   atomic.Int32 // workers started
	grow      sync.Mutex   // held while starting workers
	startPool sync.Once    // makes jobs and wake
)

// Capacities of the queues. A part that finds jobs full runs on its caller,
// so jobsCap only bounds how many parts wait at once; wake's elements take
// no memory, and wakeWorkers keeps no more tokens in it than workers.
const (
	jobsCap = 1024
	wakeCap = 1 << 20
)

// A worker with nothing to do keeps looking for parts for the worker spin
// (SetWorkerSpin) before it sleeps, and a caller waiting for its parts
// keeps looking (and helping) for waitSpin. A decode step calls a hundred
// small parallel kernels in a row; waking a sleeping thread for each (tens
// of microseconds, more when the parts end unevenly) would cost more than
// the kernels' work. Measured on mamba-130m decode at 2 threads (`go test
// ./architectures/mamba -bench Decode/130m/threads=2`): no spinning 34
// tokens/s, 50 µs 35-38, 500 µs and 2 ms 47-51. The spinning yields the
// processor at every look, so other goroutines still run.
const (
	defaultWorkerSpin = 500 * time.Microsecond
	waitSpin          = 2 * time.Millisecond
)

var (
	workerSpin  atomic.Int64 // nanoseconds; set by loadSpin, then SetWorkerSpin
	spinFromEnv sync.Once
)

// spinEnv is the environment variable that sets the starting worker spin
// (see SetWorkerSpin).
const spinEnv = "DENSESSM_CPU_SPIN"

// SetWorkerSpin sets how long a worker of the CPU backend's shared pool
// keeps looking for work after it ends a part before it parks, and returns
// the previous setting. The default is 500 µs, which keeps the workers
// awake between the many small kernels of a decode step (at 2 threads it
// took mamba-130m decode from 34 to 47-51 tokens/s); 0 parks a worker as
// soon as it finds the queue empty, for programs that would rather spend
// no CPU between calls than decode fast. A negative d counts as 0. Parked
// workers cost nothing: they block until a kernel queues work. (A kernel's
// caller, waiting for its parts, still looks for work for up to 2 ms, but
// only while its kernel runs.)
//
// The environment variable DENSESSM_CPU_SPIN (a time.ParseDuration string
// such as "0" or "200us"), read once when the pool is first used or
// SetWorkerSpin first called, sets the starting value; a value that does
// not parse, or is negative, is ignored. SetWorkerSpin may be called at
// any time, also while kernels run; workers see the new value when they
// next end a part.
func SetWorkerSpin(d time.Duration) (previous time.Duration) {
	loadSpin()
	return time.Duration(workerSpin.Swap(int64(max(d, 0))))
}

// loadSpin sets the worker spin from spinEnv, or to the default, once.
func loadSpin() {
	spinFromEnv.Do(func() {
		d := defaultWorkerSpin
		if v, err := time.ParseDuration(os.Getenv(spinEnv)); err == nil && v >= 0 {
			d = v
		}
		workerSpin.Store(int64(d))
	})
}

// startWorkers makes sure the shared pool has at least n workers, starting
// the missing ones. Every call that splits work asks for its backend's
// thread count less one (the caller runs a part too), so the pool holds as
// many workers as the widest backend that has split work needs, however
// many CPUs the machine has, and none before then.
func startWorkers(n int) {
	if int(workers.Load()) >= n {
		return
	}
	startPool.Do(func() {
		loadSpin()
		jobs = make(chan job, jobsCap)
		wake = make(chan struct{}, wakeCap)
	})
	grow.Lock()
	defer grow.Unlock()
	for w := int(workers.Load()); w < n; w++ {
		idle.Add(1)
		workers.Add(1)
		go work()
	}
}

// work runs queued parts forever, spinning for the worker spin after each
// before it sleeps until a caller wakes it.
//
// Sleeping workers wait on wake, never on jobs: were a part handed
// straight to a sleeper, the sleeper would wait to run in the caller's
// run queue while the caller computes, and a spinning worker on the other
// processor, who keeps finding itself in the global run queue, would
// never steal it. Two-worker GEMMs started their second part 585 µs
// late, every call, that way.
func work() {
	for {
		j, ok := spinForJob(nil, time.Duration(workerSpin.Load()))
		idle.Add(-1)
		if !ok {
			// A part queued before the decrement was seen by a caller
			// who counted this worker as idle and woke no one: take it
			// now, or sleep.
			select {
			case j = <-jobs:
			default:
				<-wake
				idle.Add(1)
				continue
			}
		}
		j.exec()
		idle.Add(1)
	}
}

// wakeWorkers wakes sleeping workers for n newly queued parts, as many as
// the idle workers do not cover.
func wakeWorkers(n int) {
	for range n - int(idle.Load()) {
		if len(wake) >= int(workers.Load()) {
			return // every worker has a token already
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// spinForJob looks for a queued part for up to spin, or until g (when
// not nil) has no part left running, yielding the processor between looks
// so that the goroutine it is spinning for can run. It reports whether it
// took a part.
func spinForJob(g *group, spin time.Duration) (job, bool) {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case j := <-jobs:
			return j, true
		default:
		}
		if g != nil && g.pending.Load() == 0 {
			return job{}, false
		}
		if i == 0 {
			if spin <= 0 {
				return job{}, false
			}
			start = time.Now()
		} else if time.Since(start) > spin {
			return job{}, false
		}
		runtime.Gosched()
	}
}

// exec runs the part, records a panic, and signals the group when it is the
// last queued part to end.
func (j job) exec() {
	j.g.runPart(j.t, j.lo, j.hi)
	if j.g.pending.Add(-1) == 0 {
		j.g.done <- struct{}{}
	}
}

// wait helps with queued parts (of this call or any other) until the last
// queued part of g has ended.
func (g *group) wait() {
	for {
		j, ok := spinForJob(g, waitSpin)
		if !ok {
			select {
			case <-g.done:
				return
			case j = <-jobs:
			}
		}
		j.exec()
	}
}

// runPart runs one part, keeping its panic for the caller.
func (g *group) runPart(t task, lo, hi int) {
	defer func() {
		if r := recover(); r != nil {
			g.mu.Lock()
			if g.panic == nil {
				g.panic = r
			}
			g.mu.Unlock()
		}
	}()
	t.run(lo, hi)
}

// parts returns how many parts n items of at least grain each make.
func (b *Backend) parts(n, grain int) int {
	return min(b.threads, (n+grain-1)/max(grain, 1))
}

// run executes t over [0,n) in parts of at least grain items. A panic in
// any part is raised again on the caller's goroutine (where the entry
// point's api.Recover turns it into an error) once every part has ended.
func (b *Backend) run(n, grain int, t task) {
	parts := b.parts(n, grain)
	if parts <= 1 {
		if n > 0 {
			t.run(0, n)
		}
		return
	}
	startWorkers(b.threads - 1)
	g := groups.Get().(*group)
	g.pending.Store(int32(parts - 1))
	queued := 0
	for p := 1; p < parts; p++ {
		j := job{t: t, lo: p * n / parts, hi: (p + 1) * n / parts, g: g}
		select {
		case jobs <- j:
			queued++
		default: // the queue is full: run the part here
			j.exec()
		}
	}
	wakeWorkers(queued)
	g.runPart(t, 0, n/parts)
	g.wait()
	p := g.panic
	g.panic = nil
	groups.Put(g)
	if p != nil {
		panic(p)
	}
}

// parallel runs fn over [0,n) in parts of at least minGrain items (see run).
// The closure is allocated per call: kernels on the decode path use run with
// a pooled task instead.
func (b *Backend) parallel(n int, fn func(lo, hi int)) {
	b.run(n, minGrain, funcTask(fn))
}

// parallelGrain is parallel with a caller-chosen minimum part size, for
// loops whose items are expensive (rows, heads, batch entries).
func (b *Backend) parallelGrain(n, grain int, fn func(lo, hi int)) {
	b.run(n, grain, funcTask(fn))
}

// width returns the most parts run splits work into: the thread count.
func (b *Backend) width() int { return b.threads }
