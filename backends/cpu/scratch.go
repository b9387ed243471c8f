package cpu

import "sync"

// slicePool recycles scratch buffers of varying sizes, so that the kernels
// of the decode path allocate nothing once warm.
type slicePool[T any] struct{ p sync.Pool }

// floatPool recycles float32 scratch buffers.
type floatPool = slicePool[float32]

// get returns a buffer of n elements with unspecified contents; hand it
// back with put when done.
func (sp *slicePool[T]) get(n int) *[]T {
	if v, ok := sp.p.Get().(*[]T); ok && cap(*v) >= n {
		*v = (*v)[:n]
		return v
	}
	s := make([]T, n)
	return &s
}

// put returns a buffer obtained from get to the pool.
func (sp *slicePool[T]) put(s *[]T) { sp.p.Put(s) }
