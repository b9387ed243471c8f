package cuda

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
)

// The caching allocator. Device allocations (cuMemAlloc) are slow and
// synchronize the device, so a freed block is kept and handed out again
// for the next allocation of its size class. Everything the backend holds
// on the device, in use or cached, counts against its cap (Options
// MaxMemory, by default 90% of the device memory free when the backend is
// made): an allocation that would pass it first frees the cached blocks
// and then fails with an error wrapping api.ErrOutOfMemory, and so does
// an allocation the device itself refuses after the cache is emptied.
//
// Reuse is safe without waiting for the device: every kernel, copy and
// GEMM is queued on the backend's one stream, so work queued with the
// block's next owner runs after the work of its last one.

// minBlock is the smallest block: cuMemAlloc aligns to 256 bytes anyway.
const minBlock = 256

// sizeClass rounds n up to its size class: 256 bytes, then 8 classes per
// power of two (at most 12.5% unused).
func sizeClass(n int64) int64 {
	if n <= minBlock {
		return minBlock
	}
	shift := bits.Len64(uint64(n-1)) - 4 // 8 steps between 2^(k-1) and 2^k
	if shift < 0 {
		shift = 0
	}
	step := int64(1) << shift
	return (n + step - 1) / step * step
}

// block is device memory of one size class.
type block struct {
	ptr   driver.DevicePtr
	size  int64       // the size class
	freed atomic.Bool // handed back (set under allocator.mu); a block value is never reused
}

// MemStats are the allocator's counters.
type MemStats struct {
	Cap       int64 // the memory cap in bytes
	InUse     int64 // bytes of blocks held by live tensors
	Cached    int64 // bytes of free blocks kept for reuse
	Peak      int64 // the largest InUse + Cached so far
	Allocs    int64 // blocks allocated on the device
	Reuses    int64 // allocations served from the cache
	Evictions int64 // cached blocks given back to the device
}

type allocator struct {
	mu    sync.Mutex
	dev   device
	cap   int64
	cache map[int64][]*block // free blocks by size class
	st    MemStats
}

func newAllocator(dev device, cap int64) *allocator {
	return &allocator{dev: dev, cap: cap, cache: map[int64][]*block{}, st: MemStats{Cap: cap}}
}

// get returns a block of at least n bytes (n > 0), or an error wrapping
// api.ErrOutOfMemory.
func (a *allocator) get(n int64) (*block, error) {
	c := sizeClass(n)
	a.mu.Lock()
	defer a.mu.Unlock()
	if free := a.cache[c]; len(free) > 0 {
		old := free[len(free)-1]
		a.cache[c] = free[:len(free)-1]
		// A new block value: the old one stays freed, so that a stale
		// Free or garbage-collector cleanup of its last owner does nothing.
		blk := &block{ptr: old.ptr, size: old.size}
		a.st.Cached -= c
		a.st.InUse += c
		a.st.Reuses++
		return blk, nil
	}
	if a.st.InUse+a.st.Cached+c > a.cap {
		a.evictLocked()
		if a.st.InUse+c > a.cap {
			return nil, fmt.Errorf("cuda: allocating %d bytes would take the backend past its memory cap of %d bytes (%d in use): %w",
				n, a.cap, a.st.InUse, api.ErrOutOfMemory)
		}
	}
	p, err := a.dev.alloc(c)
	if err != nil && errors.Is(err, api.ErrOutOfMemory) && a.st.Cached > 0 {
		a.evictLocked()
		p, err = a.dev.alloc(c)
	}
	if err != nil {
		return nil, fmt.Errorf("cuda: allocating %d bytes (%d in use by the backend): %w", n, a.st.InUse, err)
	}
	a.st.Allocs++
	a.st.InUse += c
	a.st.Peak = max(a.st.Peak, a.st.InUse+a.st.Cached)
	return &block{ptr: p, size: c}, nil
}

// put hands a block back to the cache; a block already there is left
// alone (a second Free, or the garbage collector's cleanup of a tensor
// freed before).
func (a *allocator) put(blk *block) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if blk.freed.Load() {
		return
	}
	blk.freed.Store(true)
	a.st.InUse -= blk.size
	a.st.Cached += blk.size
	a.cache[blk.size] = append(a.cache[blk.size], blk)
}

// evictLocked gives every cached block back to the device.
func (a *allocator) evictLocked() {
	for c, free := range a.cache {
		for _, blk := range free {
			_ = a.dev.free(blk.ptr) // a failure leaves device memory leaked, nothing worse
			a.st.Cached -= c
			a.st.Evictions++
		}
		delete(a.cache, c)
	}
}

// trim gives the cached blocks back to the device.
func (a *allocator) trim() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evictLocked()
}

func (a *allocator) stats() MemStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st
}
