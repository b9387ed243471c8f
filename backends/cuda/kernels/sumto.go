package kernels

import (
	"encoding/binary"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
)

// MaxSumDims is the most kept and the most summed dimensions (each, after
// merging) ds_sum_to_f32's DsSumTo holds.
const MaxSumDims = 8

// SumToPlan is ds_sum_to_f32's DsSumTo: x's axes of size above 1 split into
// the kept ones (in order: dst's row-major layout) and the summed ones,
// adjacent axes of one kind merged, each with its stride in x (elements).
type SumToPlan struct {
	Keep, KeepStride []int64
	Sum, SumStride   []int64
}

// PlanSumTo returns the plan of SumTo from x to dst, where dst broadcasts to
// x (it may have fewer axes, size 1 where x has any size, and extra leading
// axes of size 1); the caller has checked that. More than MaxSumDims kept or
// summed dimensions after merging is api.ErrUnsupported.
func PlanSumTo(dst, x []int) (SumToPlan, error) {
	for len(dst) > len(x) {
		dst = dst[1:]
	}
	var p SumToPlan
	stride := int64(1)
	// Innermost first, reversed at the end.
	lastKept := -1 // -1 none yet, 0 summed, 1 kept
	for i := len(x) - 1; i >= 0; i-- {
		size := int64(x[i])
		if size == 1 {
			continue
		}
		k := i - (len(x) - len(dst))
		kept := k >= 0 && dst[k] != 1
		switch {
		case kept && lastKept == 1:
			p.Keep[len(p.Keep)-1] *= size
		case !kept && lastKept == 0:
			p.Sum[len(p.Sum)-1] *= size
		case kept:
			p.Keep, p.KeepStride = append(p.Keep, size), append(p.KeepStride, stride)
		default:
			p.Sum, p.SumStride = append(p.Sum, size), append(p.SumStride, stride)
		}
		if kept {
			lastKept = 1
		} else {
			lastKept = 0
		}
		stride *= size
	}
	for _, s := range [][]int64{p.Keep, p.KeepStride, p.Sum, p.SumStride} {
		for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
			s[i], s[j] = s[j], s[i]
		}
	}
	if len(p.Keep) > MaxSumDims || len(p.Sum) > MaxSumDims {
		return SumToPlan{}, fmt.Errorf("%w: sum of %v to %v needs %d kept and %d summed dimensions, the kernel takes %d of each",
			api.ErrUnsupported, x, dst, len(p.Keep), len(p.Sum), MaxSumDims)
	}
	return p, nil
}

// Bytes lays the plan out as the kernel's struct (nkeep, two arrays of
// MaxSumDims, nsum, two arrays of MaxSumDims: 64-bit little-endian values).
func (p SumToPlan) Bytes() driver.Bytes {
	const half = 1 + 2*MaxSumDims
	b := make([]byte, 8*2*half)
	put := func(i int, v int64) { binary.LittleEndian.PutUint64(b[8*i:], uint64(v)) }
	put(0, int64(len(p.Keep)))
	for i := range p.Keep {
		put(1+i, p.Keep[i])
		put(1+MaxSumDims+i, p.KeepStride[i])
	}
	put(half, int64(len(p.Sum)))
	for i := range p.Sum {
		put(half+1+i, p.Sum[i])
		put(half+1+MaxSumDims+i, p.SumStride[i])
	}
	return b
}

// DecodeSumToPlan reads a plan back from its bytes.
func DecodeSumToPlan(raw []byte) SumToPlan {
	const half = 1 + 2*MaxSumDims
	u := func(i int) int64 { return int64(binary.LittleEndian.Uint64(raw[8*i:])) }
	var p SumToPlan
	for d := range int(u(0)) {
		p.Keep, p.KeepStride = append(p.Keep, u(1+d)), append(p.KeepStride, u(1+MaxSumDims+d))
	}
	for d := range int(u(half)) {
		p.Sum, p.SumStride = append(p.Sum, u(half+1+d)), append(p.SumStride, u(half+1+MaxSumDims+d))
	}
	return p
}

// Outputs and Summed are the kernel's n and m: the products of the kept and
// the summed dimensions.
func (p SumToPlan) Outputs() int64 { return prod(p.Keep) }

// Summed is the number of elements of x summed into each output.
func (p SumToPlan) Summed() int64 { return prod(p.Sum) }

func prod(s []int64) int64 {
	n := int64(1)
	for _, v := range s {
		n *= v
	}
	return n
}

// Offsets is the kernel's index arithmetic in Go: the offset in x of
// output i's first element (base) and of summed element j from it.
func (p SumToPlan) Offsets(i, j int64) (off int64) {
	for d := len(p.Keep) - 1; d >= 0; d-- {
		off += (i % p.Keep[d]) * p.KeepStride[d]
		i /= p.Keep[d]
	}
	for d := len(p.Sum) - 1; d >= 0; d-- {
		off += (j % p.Sum[d]) * p.SumStride[d]
		j /= p.Sum[d]
	}
	return off
}
