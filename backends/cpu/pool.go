package cpu

import (
	"math/bits"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	"github.com/densessm/densessm/internal/sysmem"
)

// The buffer pool: F32 storage that Free hands back is kept, by size
// class, for Alloc to reuse, so that a forward pass whose tape frees its
// activations (nn.Tape.Release) runs in the same memory as the pass before
// it, whatever the garbage collector's GOGC.
//
//   - Only F32 tensors of at least poolMinFloats elements are pooled; smaller
//     ones (and other dtypes) come from Go's allocator, and Free leaves
//     them to the garbage collector as before.
//   - A pooled buffer's capacity is its size class: the element count
//     rounded up to four significant bits (8 classes per power of two, at
//     most 12.5% more than asked for). Alloc takes an idle buffer of the
//     class, clears the elements the tensor uses, and hands out a slice of
//     them; only when the class has none does it allocate, after checking
//     the memory budget (reserve) and, when the budget would be passed,
//     dropping every idle buffer first.
//   - The pool knows which buffers it has handed out (by address, with a
//     weak pointer that tells an address reused by another object apart),
//     so Free accepts only storage that Alloc made and that is not already
//     free: freeing a tensor twice, or freeing memory the backend did not
//     allocate (WrapFloat32s), does nothing. A buffer handed out and never
//     freed is reclaimed by the garbage collector as before; a cleanup then
//     forgets it.
//   - Idle buffers are bounded in bytes by the pool limit (SetPoolLimit,
//     DENSESSM_CPU_POOL; default 1 GiB), and by a quarter of the freeing
//     backend's memory budget: a buffer freed into a full pool is left to
//     the garbage collector. DropIdleBuffers lets every idle buffer go.
//
// One pool serves every CPU backend of the process (memory is the
// process's, as the budget's heap measure is); a mutex guards it, so
// Alloc and Free may run on any goroutines at once.

// poolMinFloats is the smallest F32 tensor (in elements: 16 KiB) whose
// storage is pooled.
const poolMinFloats = 4096

// defaultPoolLimit is the default bound on the idle bytes the pool keeps.
const defaultPoolLimit = 1 << 30

// poolEnv is the environment variable that sets the starting pool limit
// (see SetPoolLimit).
const poolEnv = "DENSESSM_CPU_POOL"

// PoolStats counts what the buffer pool has done since the process
// started (the counters only grow) and what it holds now.
type PoolStats struct {
	Allocs    uint64 // pooled-size F32 allocations
	Reused    uint64 // of those, served from an idle buffer
	Frees     uint64 // buffers Free handed back
	Dropped   uint64 // of those, left to the garbage collector: the pool was full (or DropIdleBuffers, or the budget)
	Ignored   uint64 // Frees of pooled-size storage the pool had not handed out or that was already free
	Collected uint64 // buffers handed out, never freed, and reclaimed by the garbage collector

	AllocBytes uint64 // bytes handed out by pooled-size allocations (their classes' sizes)

	LiveBytes     int64 // bytes of buffers handed out and not yet freed or collected
	PeakLiveBytes int64 // the most LiveBytes has been since the process started or ResetPeakLiveBytes
	IdleBytes     int64 // bytes of idle buffers
	IdleBuffers   int   // idle buffers
}

// poolEntry is an idle buffer: its whole capacity, and the weak pointer
// that names it in bufferPool.live.
type poolEntry struct {
	buf []float32
	wp  weak.Pointer[float32]
}

// bufferPool is the pool; see the comment at the top of this file.
type bufferPool struct {
	mu    sync.Mutex
	live  map[uintptr]weak.Pointer[float32] // handed out and not freed, by address
	idle  map[int][]poolEntry               // by class (capacity in elements), the most recently freed last
	stats PoolStats
}

var pool = bufferPool{live: map[uintptr]weak.Pointer[float32]{}, idle: map[int][]poolEntry{}}

// poolLimit is the bound on idle bytes (0: pooling off); -1 until set.
var (
	poolLimit        atomic.Int64
	poolLimitFromEnv sync.Once
)

// SetPoolLimit sets the most bytes of idle buffers the CPU backends' pool
// keeps for reuse, and returns the previous limit. 0 turns pooling off:
// Alloc then allocates every tensor and Free does nothing, as before the
// pool. Lowering the limit drops idle buffers past it at once.
//
// The environment variable DENSESSM_CPU_POOL (a size such as "256MiB" or
// "0"), read once when the pool is first used or SetPoolLimit first
// called, sets the starting value; one that does not parse is ignored.
func SetPoolLimit(bytes int64) (previous int64) {
	loadPoolLimit()
	previous = poolLimit.Swap(max(bytes, 0))
	pool.trim(max(bytes, 0))
	return previous
}

// loadPoolLimit sets the pool limit from poolEnv, or to the default, once.
func loadPoolLimit() {
	poolLimitFromEnv.Do(func() {
		n := int64(defaultPoolLimit)
		if v := os.Getenv(poolEnv); v != "" {
			if s, err := sysmem.ParseSize(v); err == nil && s >= 0 {
				n = s
			}
		}
		poolLimit.Store(n)
	})
}

// currentPoolLimit returns the pool limit.
func currentPoolLimit() int64 {
	loadPoolLimit()
	return poolLimit.Load()
}

// ReadPoolStats returns the pool's counters.
func ReadPoolStats() PoolStats {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	return pool.stats
}

// ResetPeakLiveBytes starts PoolStats.PeakLiveBytes again from the
// bytes handed out now.
func ResetPeakLiveBytes() {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	pool.stats.PeakLiveBytes = pool.stats.LiveBytes
}

// DropIdleBuffers lets every idle buffer go to the garbage collector (a
// program about to sit idle with a model loaded may call it, then
// debug.FreeOSMemory, to give the memory back to the system).
func DropIdleBuffers() { pool.trim(0) }

// classSize returns the capacity of n's size class: n rounded up to its
// four most significant bits.
func classSize(n int) int {
	shift := bits.Len(uint(n)) - 4
	if shift <= 0 {
		return n
	}
	return (n + 1<<shift - 1) >> shift << shift
}

// allocF32 returns zero-filled storage of n float32s for a new tensor of
// b: an idle pooled buffer when there is one of n's class, else fresh
// memory checked against b's budget.
func (b *Backend) allocF32(n int) []float32 {
	if n < poolMinFloats || currentPoolLimit() == 0 {
		b.reserve(4 * uint64(n))
		return make([]float32, n)
	}
	c := classSize(n)
	if s := pool.take(c); s != nil {
		clear(s[:n])
		return s[:n]
	}
	bytes := 4 * uint64(c)
	if b.budget > 0 && bytes >= reserveMin && uint64(heapBytes())+bytes > uint64(b.budget) {
		pool.trim(0) // idle buffers count in the heap: let them go before the budget refuses
	}
	b.reserve(bytes)
	s := make([]float32, c)
	pool.adopt(s)
	return s[:n]
}

// freeF32 hands t's storage back to the pool when the pool handed it out
// and it is not free yet, and then clears t's storage so that using t
// fails loudly; anything else is left alone.
func (b *Backend) freeF32(t *Tensor) {
	limit := currentPoolLimit()
	if b.budget > 0 {
		limit = min(limit, b.budget/4)
	}
	if pool.release(t.f32, limit) {
		t.f32 = nil
	}
}

// take returns an idle buffer of class c, now handed out, or nil.
func (p *bufferPool) take(c int) []float32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Allocs++
	list := p.idle[c]
	if len(list) == 0 {
		return nil
	}
	e := list[len(list)-1]
	list[len(list)-1] = poolEntry{}
	p.idle[c] = list[:len(list)-1]
	bytes := 4 * int64(c)
	p.stats.Reused++
	p.stats.IdleBytes -= bytes
	p.stats.IdleBuffers--
	p.handOut(bytes)
	p.live[bufAddr(e.buf)] = e.wp
	return e.buf
}

// handOut counts a buffer of the given bytes handed out; p.mu is held.
func (p *bufferPool) handOut(bytes int64) {
	p.stats.AllocBytes += uint64(bytes)
	p.stats.LiveBytes += bytes
	p.stats.PeakLiveBytes = max(p.stats.PeakLiveBytes, p.stats.LiveBytes)
}

// poolCleanup is what a handed-out buffer's cleanup needs to forget it.
type poolCleanup struct {
	addr  uintptr
	wp    weak.Pointer[float32]
	bytes int64
}

// adopt records a freshly made buffer (len == cap == its class) as handed
// out.
func (p *bufferPool) adopt(s []float32) {
	ptr := unsafe.SliceData(s)
	wp := weak.Make(ptr)
	k := poolCleanup{addr: uintptr(unsafe.Pointer(ptr)), wp: wp, bytes: 4 * int64(len(s))}
	p.mu.Lock()
	p.live[k.addr] = wp
	p.handOut(k.bytes)
	p.mu.Unlock()
	runtime.AddCleanup(ptr, forgetBuffer, k)
}

// forgetBuffer runs when a buffer the pool made has been collected: if it
// was handed out when it became garbage, the pool forgets it.
func forgetBuffer(k poolCleanup) {
	p := &pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if wp, ok := p.live[k.addr]; ok && wp == k.wp {
		delete(p.live, k.addr)
		p.stats.LiveBytes -= k.bytes
		p.stats.Collected++
	}
}

// release takes back s's buffer if the pool handed it out and it is not
// free yet, keeping it idle while the idle bytes stay within limit; it
// reports whether the buffer was the pool's.
func (p *bufferPool) release(s []float32, limit int64) bool {
	c := cap(s)
	if c < poolMinFloats {
		return false
	}
	full := s[:c]
	ptr := unsafe.SliceData(full)
	addr := uintptr(unsafe.Pointer(ptr))
	p.mu.Lock()
	defer p.mu.Unlock()
	wp, ok := p.live[addr]
	if !ok || wp.Value() != ptr || classSize(c) != c {
		p.stats.Ignored++
		return false
	}
	delete(p.live, addr)
	bytes := 4 * int64(c)
	p.stats.Frees++
	p.stats.LiveBytes -= bytes
	if p.stats.IdleBytes+bytes > limit {
		p.stats.Dropped++
		return true
	}
	p.idle[c] = append(p.idle[c], poolEntry{buf: full, wp: wp})
	p.stats.IdleBytes += bytes
	p.stats.IdleBuffers++
	return true
}

// trim drops idle buffers, the largest classes first, until at most limit
// bytes are idle.
func (p *bufferPool) trim(limit int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.stats.IdleBytes > limit {
		largest := 0
		for c, list := range p.idle {
			if len(list) > 0 && c > largest {
				largest = c
			}
		}
		if largest == 0 {
			break
		}
		list := p.idle[largest]
		for i := len(list) - 1; i >= 0 && p.stats.IdleBytes > limit; i-- {
			list[i] = poolEntry{}
			list = list[:i]
			p.stats.IdleBytes -= 4 * int64(largest)
			p.stats.IdleBuffers--
			p.stats.Dropped++
		}
		if len(list) == 0 {
			delete(p.idle, largest)
		} else {
			p.idle[largest] = list
		}
	}
}

// bufAddr returns the address of s's first element.
func bufAddr(s []float32) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(s))) }
