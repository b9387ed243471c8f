package pybind

// #include <stdlib.h>
import "C"

import (
	"sync"
	"unsafe"
)

// floatMem allocates the float32 buffers of logits handed to NumPy:
// C memory, uninitialised (every element is written before it is
// exported), kept for reuse when Python frees it. Fresh memory from the
// kernel costs a page fault per 4 KiB and its zeroing on first write:
// 1024 × 50,280 logits took 140 ms instead of 65 ms (BenchmarkLogits) when
// every call had a new buffer. Only buffers that every writer fills may
// come from here; Arrow builders use cmem, which zeroes.
var floatMem = &bufferCache{maxBytes: 512 << 20, maxBuffers: 8}

// bufferCache is an arrow memory.Allocator over C malloc that keeps freed
// buffers of 1 MiB or more (up to maxBuffers of them and maxBytes in all)
// to hand out again for the same size. Safe for concurrent use: Python
// frees buffers from whichever thread drops the last reference.
type bufferCache struct {
	maxBytes, maxBuffers int

	mu    sync.Mutex
	spare []unsafe.Pointer // kept buffers, by their size in sizes
	sizes []int
	bytes int // the kept buffers' total size
}

// sizeClass rounds a request up to what is allocated: whole 1 MiB for
// large buffers (so that a buffer fits the next request of about the same
// size), 64 bytes otherwise.
func sizeClass(n int) int {
	if n >= 1<<20 {
		return (n + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return max(64, (n+63)&^63)
}

// Allocate returns size bytes aligned to 64, not zeroed.
func (c *bufferCache) Allocate(size int) []byte {
	class := sizeClass(size)
	c.mu.Lock()
	for i, n := range c.sizes {
		if n == class {
			p := c.spare[i]
			c.spare = append(c.spare[:i], c.spare[i+1:]...)
			c.sizes = append(c.sizes[:i], c.sizes[i+1:]...)
			c.bytes -= n
			c.mu.Unlock()
			return unsafe.Slice((*byte)(p), class)[:size:class]
		}
	}
	c.mu.Unlock()
	p := C.aligned_alloc(64, C.size_t(class))
	if p == nil {
		panic("pybind: out of C memory")
	}
	return unsafe.Slice((*byte)(p), class)[:size:class]
}

// Reallocate returns b resized to size, moving it when it must grow.
func (c *bufferCache) Reallocate(size int, b []byte) []byte {
	if size <= cap(b) {
		return b[:size]
	}
	nb := c.Allocate(size)
	copy(nb, b)
	c.Free(b)
	return nb
}

// Free keeps a large buffer for reuse while the cache has room, and frees
// the others.
func (c *bufferCache) Free(b []byte) {
	if cap(b) == 0 {
		return
	}
	p, class := unsafe.Pointer(unsafe.SliceData(b[:1])), cap(b)
	c.mu.Lock()
	if class >= 1<<20 && len(c.spare) < c.maxBuffers && c.bytes+class <= c.maxBytes {
		c.spare = append(c.spare, p)
		c.sizes = append(c.sizes, class)
		c.bytes += class
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	C.free(p)
}
