package cpu

import "sync"

// floatPool keeps the kernels of the decode path allocation-free once warm
// by recycling their scratch buffers.

// floatPool recycles float32 scratch buffers of varying sizes.
type floatPool struct{ p sync.Pool }

// get returns a buffer of n floats with unspecified contents; hand it back
// with put when done.
func (fp *floatPool) get(n int) *[]float32 {
	if v, ok := fp.p.Get().(*[]float32); ok && cap(*v) >= n {
		*v = (*v)[:n]
		return v
	}
	s := make([]float32, n)
	return &s
}

// put returns a buffer obtained from get to the pool.
func (fp *floatPool) put(s *[]float32) { fp.p.Put(s) }
