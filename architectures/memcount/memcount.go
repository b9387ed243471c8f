// Package memcount adds up element and byte counts without overflowing:
// every operation saturates at math.MaxInt64, so that the memory estimate
// of an absurd configuration is "too much", never a wrapped small number.
package memcount

import "math"

// Mul returns the product of the factors, math.MaxInt64 when it does not
// fit, and 0 when a factor is zero or negative (a size that is not there).
func Mul(factors ...int64) int64 {
	p := int64(1)
	for _, f := range factors {
		if f <= 0 {
			return 0
		}
	}
	for _, f := range factors {
		if p > math.MaxInt64/f {
			return math.MaxInt64
		}
		p *= f
	}
	return p
}

// Add returns the sum of the terms (negative terms count as 0), saturating
// at math.MaxInt64.
func Add(terms ...int64) int64 {
	s := int64(0)
	for _, t := range terms {
		if t <= 0 {
			continue
		}
		if s > math.MaxInt64-t {
			return math.MaxInt64
		}
		s += t
	}
	return s
}

// Count is a running sum of products of sizes.
type Count int64

// Add adds the product of the factors (see Mul) to c.
func (c *Count) Add(factors ...int) { c.AddN(1, factors...) }

// AddN adds n times the product of the factors to c.
func (c *Count) AddN(n int64, factors ...int) {
	for _, f := range factors {
		n = Mul(n, int64(f))
	}
	*c = Count(Add(int64(*c), n))
}

// Value returns the sum.
func (c Count) Value() int64 { return int64(c) }

// SumMin returns the sum of min(m, i) for i = 1 .. n-1, saturating: the
// number of links into the layers of an n-layer model whose layers link to
// up to m previous layers.
func SumMin(m, n int) int64 {
	if m <= 0 || n <= 1 {
		return 0
	}
	k := int64(n - 1) // layers 1 .. n-1
	mm := int64(m)
	if k <= mm { // every layer links to all the layers before it
		return triangle(k)
	}
	// Layers 1..m link to i layers, the k-m after them to m each.
	return Add(triangle(mm), Mul(k-mm, mm))
}

// triangle returns 1 + 2 + ... + k, saturating.
func triangle(k int64) int64 {
	if k%2 == 0 {
		return Mul(k/2, k+1)
	}
	return Mul(k, (k+1)/2)
}

// TensorOverhead is what one allocated tensor costs in host memory beyond
// its data, at most: the Go heap rounds each allocation up to its size
// class (by at most an eighth) or, above 32 KiB, to whole 8 KiB pages, and
// the tensor's header, shape, Var and (on a recording tape) backward
// closure take a few hundred bytes.
const TensorOverhead = 8<<10 + HeaderBytes

// HeaderBytes bounds the host memory of a tensor's header and shape, and of
// a view (a reshape) of a tensor.
const HeaderBytes = 512

// TensorBytes returns the bytes of one float32 tensor of the given shape
// with its allocation overhead at most: the data, the heap's rounding (at
// most a quarter of the data and at most 8 KiB) and HeaderBytes.
func TensorBytes(shape ...int) int64 {
	n := int64(1)
	for _, d := range shape {
		n = Mul(n, int64(d))
	}
	data := Mul(n, 4)
	return Add(data, min(data/4+8, 8<<10), HeaderBytes)
}
