// Package memcount adds up element and byte counts without overflowing:
// every operation saturates at math.MaxInt64, so that the memory estimate
// of an absurd configuration is "too much", never a wrapped small number.
package memcount

import (
	"math"

	"github.com/densessm/densessm/api"
)

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

// Params counts a model's parameters as api.MemoryEstimate splits them
// by the storage of low-precision weights (api.BuildOptions.Weights): all
// of them, those in weight matrices (made by nn.Scope.Matrix: stored in
// BF16 by a model with BF16 weights), and those in the weight matrices
// whose number of columns is a multiple of api.Q8Block (stored in Q8_0 by
// a model with Q8_0 weights). The zero value counts nothing.
type Params struct {
	All, Matrix, Q8 Count
}

// Add adds a parameter of the shape the factors give that is not a weight
// matrix (a norm, a bias, a convolution, the SSM's A_log and D): it stays
// F32 whatever the weights.
func (p *Params) Add(factors ...int) { p.All.Add(factors...) }

// AddMatrix adds n weight matrices [rows, cols] made by nn.Scope.Matrix
// (a Linear layer's weight, an embedding table, an output head), or
// equally one matrix [n*rows, cols]: the number of columns decides
// whether Q8_0 holds it.
func (p *Params) AddMatrix(n int64, rows, cols int) {
	p.All.AddN(n, rows, cols)
	p.Matrix.AddN(n, rows, cols)
	if cols%api.Q8Block == 0 {
		p.Q8.AddN(n, rows, cols)
	}
}

// AddN adds n times the parameters q counts.
func (p *Params) AddN(n int64, q Params) {
	p.All.AddN(Mul(n, q.All.Value()))
	p.Matrix.AddN(Mul(n, q.Matrix.Value()))
	p.Q8.AddN(Mul(n, q.Q8.Value()))
}

// SetIn sets e's parameter counts (Parameters, MatrixParameters,
// Q8Parameters) to p's and e.WeightBytes to their bytes in float32.
func (p Params) SetIn(e *api.MemoryEstimate) {
	e.Parameters = p.All.Value()
	e.MatrixParameters = p.Matrix.Value()
	e.Q8Parameters = p.Q8.Value()
	e.WeightBytes = Mul(e.Parameters, 4)
}

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
