package cpu

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/densessm/densessm/api"
)

// poolTest empties the pool, sets its limit for the test and puts both
// back afterwards. The pool is the process's: tests that use it do not run
// in parallel.
func poolTest(t *testing.T, limit int64) {
	t.Helper()
	DropIdleBuffers()
	old := SetPoolLimit(limit)
	t.Cleanup(func() {
		SetPoolLimit(old)
		DropIdleBuffers()
	})
}

// storage returns the address of an F32 tensor's first element.
func storage(x api.Tensor) unsafe.Pointer {
	return unsafe.Pointer(unsafe.SliceData(x.(*Tensor).f32))
}

func fill(x api.Tensor, v float32) {
	for i := range x.(*Tensor).f32 {
		x.(*Tensor).f32[i] = v
	}
}

func checkZero(t *testing.T, what string, x api.Tensor) {
	t.Helper()
	for i, v := range x.(*Tensor).f32 {
		if v != 0 {
			t.Fatalf("%s: element %d of a new tensor is %g, want 0", what, i, v)
		}
	}
}

func TestClassSize(t *testing.T) {
	prev := 0
	for n := 1; n < 1<<22; n += 1 + n/7 {
		c := classSize(n)
		if c < n || (n >= 16 && float64(c) > 1.125*float64(n)) {
			t.Fatalf("classSize(%d) = %d: want n <= c <= 1.125 n", n, c)
		}
		if classSize(c) != c {
			t.Fatalf("classSize(%d) = %d, but classSize(%d) = %d: a class size must be its own class", n, c, c, classSize(c))
		}
		if c < prev {
			t.Fatalf("classSize(%d) = %d is below the class of a smaller n (%d)", n, c, prev)
		}
		prev = c
	}
}

// TestBufferPoolReuse checks that a freed buffer is handed out again, zero-filled
// (also when the earlier tensor of its class was larger), and that the
// counters say so.
func TestBufferPoolReuse(t *testing.T) {
	poolTest(t, 1<<30)
	b := New(api.BackendOptions{Threads: 1})
	const n = 100_000 // class 100352
	x := b.Alloc(api.F32, n)
	p := storage(x)
	fill(x, 7)
	before := ReadPoolStats()
	b.Free(x)
	if x.(*Tensor).f32 != nil {
		t.Fatal("a freed tensor keeps its storage")
	}
	y := b.Alloc(api.F32, n-1000) // same class
	if storage(y) != p {
		t.Fatal("a freed buffer of the same class was not reused")
	}
	checkZero(t, "reused", y)
	fill(y, 3)
	b.Free(y)
	z := b.Alloc(api.F32, 4, n/4) // the whole class again: the tail was 7s
	if storage(z) != p {
		t.Fatal("a freed buffer of the same class was not reused (second time)")
	}
	checkZero(t, "reused whole", z)
	s := ReadPoolStats()
	if got := s.Reused - before.Reused; got != 2 {
		t.Errorf("Reused went up by %d, want 2", got)
	}
	if got := s.Frees - before.Frees; got != 2 {
		t.Errorf("Frees went up by %d, want 2", got)
	}
	b.Free(z)
	if s := ReadPoolStats(); s.IdleBuffers != 1 || s.IdleBytes != 4*int64(classSize(n)) {
		t.Errorf("idle %d buffers, %d bytes; want 1 of %d bytes", s.IdleBuffers, s.IdleBytes, 4*classSize(n))
	}
}

// TestBufferPoolFreeIsSafe checks that what the pool did not hand out, or has
// taken back already, is never pooled: a second Free, a view's Free after
// the tensor's, WrapFloat32s memory, small tensors, other dtypes.
func TestBufferPoolFreeIsSafe(t *testing.T) {
	poolTest(t, 1<<30)
	b := New(api.BackendOptions{Threads: 1})
	const n = 50_000
	x := b.Alloc(api.F32, n)
	v := b.Reshape(x, 2, n/2)
	b.Free(x)
	before := ReadPoolStats()
	b.Free(x) // twice
	b.Free(v) // a view of freed storage
	wrapped := make([]float32, classSize(n))
	b.Free(b.WrapFloat32s(wrapped, len(wrapped)))
	s := ReadPoolStats()
	if s.Frees != before.Frees || s.IdleBuffers != before.IdleBuffers {
		t.Fatalf("Frees %d -> %d, idle %d -> %d: storage the pool does not hold was taken back", before.Frees, s.Frees, before.IdleBuffers, s.IdleBuffers)
	}
	if got := s.Ignored - before.Ignored; got != 2 {
		t.Errorf("Ignored went up by %d, want 2 (the view, the wrapped memory; a freed tensor holds nothing)", got)
	}
	// Two tensors alive at once never share storage.
	y, z := b.Alloc(api.F32, n), b.Alloc(api.F32, n)
	if storage(y) == storage(z) {
		t.Fatal("two live tensors share storage")
	}
	if storage(y) == unsafe.Pointer(&wrapped[0]) || storage(z) == unsafe.Pointer(&wrapped[0]) {
		t.Fatal("WrapFloat32s memory was handed out by Alloc")
	}
	small := b.Alloc(api.F32, 100)
	b.Free(small)
	if small.(*Tensor).f32 == nil {
		t.Error("a small tensor lost its storage: it is not pooled, so Free must leave it")
	}
	ids := b.Alloc(api.I32, n)
	b.Free(ids)
	if len(ids.(*Tensor).i32) != n {
		t.Error("Free changed an I32 tensor")
	}
}

// TestBufferPoolLimit checks the bound on idle bytes: frees past it go to the
// garbage collector, lowering it drops idle buffers at once, and 0 turns
// pooling off.
func TestBufferPoolLimit(t *testing.T) {
	const n = 1 << 16 // 256 KiB a buffer
	poolTest(t, 3*4*n)
	b := New(api.BackendOptions{Threads: 1})
	var xs []api.Tensor
	for range 5 {
		xs = append(xs, b.Alloc(api.F32, n))
	}
	before := ReadPoolStats()
	for _, x := range xs {
		b.Free(x)
	}
	s := ReadPoolStats()
	if s.IdleBytes != 3*4*n || s.IdleBuffers != 3 {
		t.Errorf("idle %d bytes in %d buffers, want the limit: %d in 3", s.IdleBytes, s.IdleBuffers, 3*4*n)
	}
	if got := s.Dropped - before.Dropped; got != 2 {
		t.Errorf("Dropped went up by %d, want 2", got)
	}
	SetPoolLimit(4 * n)
	if s := ReadPoolStats(); s.IdleBytes != 4*n {
		t.Errorf("after lowering the limit to one buffer: %d bytes idle", s.IdleBytes)
	}
	SetPoolLimit(0)
	if s := ReadPoolStats(); s.IdleBytes != 0 || s.IdleBuffers != 0 {
		t.Errorf("pool off: %d bytes in %d buffers idle", s.IdleBytes, s.IdleBuffers)
	}
	x := b.Alloc(api.F32, n)
	b.Free(x)
	if x.(*Tensor).f32 == nil {
		t.Error("with the pool off, Free took a tensor's storage")
	}
	if s := ReadPoolStats(); s.IdleBuffers != 0 {
		t.Error("with the pool off, a buffer went idle")
	}
}

// TestBufferPoolBudget checks that idle buffers, which count in the heap, are
// dropped rather than making a fresh allocation fail the memory budget.
func TestBufferPoolBudget(t *testing.T) {
	poolTest(t, 1<<30)
	runtime.GC()
	b := New(api.BackendOptions{Threads: 1, MaxMemory: heapBytes() + 100<<20})
	x := b.Alloc(api.F32, 5<<20) // 20 MiB, within the idle bound of budget/4
	b.Free(x)
	if s := ReadPoolStats(); s.IdleBytes < 20<<20 {
		t.Fatalf("the freed 20 MiB is not idle: %+v", s)
	}
	var err error
	func() {
		defer api.Recover(&err)
		b.Alloc(api.F32, 22<<20) // 88 MiB: past the budget only with the idle 20 MiB
	}()
	if err != nil {
		t.Fatalf("88 MiB in a 100 MiB budget with 20 MiB idle: %v", err)
	}
	if s := ReadPoolStats(); s.IdleBytes != 0 {
		t.Errorf("%d bytes still idle", s.IdleBytes)
	}
	func() {
		defer api.Recover(&err)
		b.Alloc(api.F32, 1<<30)
	}()
	if !errors.Is(err, api.ErrOutOfMemory) {
		t.Errorf("4 GiB past a 100 MiB budget: %v", err)
	}
}

// TestBufferPoolForgetsCollected checks that a buffer handed out and never freed
// is reclaimed by the garbage collector and forgotten by the pool.
func TestBufferPoolForgetsCollected(t *testing.T) {
	poolTest(t, 1<<30)
	b := New(api.BackendOptions{Threads: 1})
	before := ReadPoolStats()
	func() { b.Alloc(api.F32, 1<<16) }()
	for i := 0; i < 100 && ReadPoolStats().Collected == before.Collected; i++ {
		runtime.GC() // cleanups run on their own goroutine after a collection
		runtime.Gosched()
	}
	if s := ReadPoolStats(); s.Collected == before.Collected {
		t.Skip("the cleanup has not run after 100 collections") // not a failure of the pool
	} else if s.LiveBytes != before.LiveBytes {
		t.Errorf("LiveBytes %d -> %d after the only new buffer was collected", before.LiveBytes, s.LiveBytes)
	}
}

// TestBufferPoolConcurrent allocates, writes, checks and frees tensors of a few
// classes on one backend from several goroutines at once (run it with
// -race): no tensor is handed out twice while alive, and every new one is
// zero-filled.
func TestBufferPoolConcurrent(t *testing.T) {
	poolTest(t, 8<<20)
	b := New(api.BackendOptions{Threads: 2})
	sizes := []int{4096, 5000, 9000, 70_000}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mark := float32(g + 1)
			var held []api.Tensor
			for i := range 300 {
				x := b.Alloc(api.F32, sizes[(g+i)%len(sizes)])
				for j, v := range x.(*Tensor).f32 {
					if v != 0 {
						errs <- errors.New("a new tensor is not zero-filled")
						return
					}
					x.(*Tensor).f32[j] = mark
				}
				held = append(held, x)
				if len(held) > 3 {
					y := held[0]
					held = held[1:]
					for _, v := range y.(*Tensor).f32 {
						if v != mark {
							errs <- errors.New("a live tensor was written by another goroutine: handed out twice")
							return
						}
					}
					b.Free(y)
				}
			}
			for _, y := range held {
				b.Free(y)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if s := ReadPoolStats(); s.IdleBytes > 8<<20 {
		t.Errorf("%d bytes idle past the 8 MiB limit", s.IdleBytes)
	}
}
