package kernels

import (
	"encoding/binary"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
)

// The host side of the kernels' launches: argument structs and launch
// geometry, pure functions of the shapes, tested without a GPU.

// MaxBroadcastDims is the kernels' DS_MAX_DIMS: dimensions of a broadcast
// after merging.
const MaxBroadcastDims = 8

// BroadcastPlan is ds_binary_f32's DsBroadcast: the output's dimensions,
// merged where the layout allows, with the element strides of a and b
// along each (0 where that operand is broadcast).
type BroadcastPlan struct {
	Dims, AStride, BStride []int64
}

// PlanBroadcast checks that dst is the NumPy broadcast of a and b (aligned
// at the last axis; sizes equal or 1) and returns the plan of the
// kernel's index arithmetic. More than MaxBroadcastDims dimensions left
// after merging is api.ErrUnsupported.
func PlanBroadcast(dst, a, b []int) (BroadcastPlan, error) {
	r := len(dst)
	if len(a) > r || len(b) > r {
		return BroadcastPlan{}, fmt.Errorf("%w: broadcast of %v and %v into %v", api.ErrShape, a, b, dst)
	}
	as, bs := alignedStrides(dst, a), alignedStrides(dst, b)
	if as == nil || bs == nil {
		return BroadcastPlan{}, fmt.Errorf("%w: broadcast of %v and %v into %v", api.ErrShape, a, b, dst)
	}
	var p BroadcastPlan
	for i := range r {
		if dst[i] == 1 {
			continue // a size-1 output axis adds nothing to any index
		}
		n := len(p.Dims)
		// Merge with the axis before when both operands step through the
		// pair as through one axis (also when both broadcast it).
		if n > 0 && p.AStride[n-1] == as[i]*int64(dst[i]) && p.BStride[n-1] == bs[i]*int64(dst[i]) {
			p.Dims[n-1] *= int64(dst[i])
			p.AStride[n-1], p.BStride[n-1] = as[i], bs[i]
			continue
		}
		p.Dims = append(p.Dims, int64(dst[i]))
		p.AStride = append(p.AStride, as[i])
		p.BStride = append(p.BStride, bs[i])
	}
	if len(p.Dims) == 0 { // one element
		p.Dims, p.AStride, p.BStride = []int64{1}, []int64{0}, []int64{0}
	}
	if len(p.Dims) > MaxBroadcastDims {
		return BroadcastPlan{}, fmt.Errorf("%w: broadcast of %v and %v into %v needs %d dimensions, the kernel takes %d",
			api.ErrUnsupported, a, b, dst, len(p.Dims), MaxBroadcastDims)
	}
	return p, nil
}

// alignedStrides returns the element strides of the contiguous shape s
// aligned at the last axis of dst, 0 on the axes s broadcasts, or nil
// when s does not broadcast to dst.
func alignedStrides(dst, s []int) []int64 {
	out := make([]int64, len(dst))
	stride := int64(1)
	for i := len(dst) - 1; i >= 0; i-- {
		j := i - (len(dst) - len(s))
		if j < 0 {
			continue // a leading axis s lacks: broadcast
		}
		switch s[j] {
		case dst[i]:
			if s[j] != 1 {
				out[i] = stride
			}
		case 1:
		default:
			return nil
		}
		stride *= int64(s[j])
	}
	return out
}

// Bytes lays the plan out as the kernel's struct (ndim, then three arrays
// of MaxBroadcastDims 64-bit values, little-endian), for driver.Launch.
func (p BroadcastPlan) Bytes() driver.Bytes {
	b := make([]byte, 8*(1+3*MaxBroadcastDims))
	binary.LittleEndian.PutUint64(b, uint64(len(p.Dims)))
	for i := range p.Dims {
		binary.LittleEndian.PutUint64(b[8*(1+i):], uint64(p.Dims[i]))
		binary.LittleEndian.PutUint64(b[8*(1+MaxBroadcastDims+i):], uint64(p.AStride[i]))
		binary.LittleEndian.PutUint64(b[8*(1+2*MaxBroadcastDims+i):], uint64(p.BStride[i]))
	}
	return b
}

// Offsets is the kernel's index arithmetic for output element i, in Go:
// the offsets of the elements of a and b it reads.
func (p BroadcastPlan) Offsets(i int64) (ao, bo int64) {
	rem := i
	for d := len(p.Dims) - 1; d >= 0; d-- {
		idx := rem % p.Dims[d]
		rem /= p.Dims[d]
		ao += idx * p.AStride[d]
		bo += idx * p.BStride[d]
	}
	return ao, bo
}

// Geometry is a launch's grid, block and dynamic shared memory.
type Geometry struct {
	Grid, Block driver.Dim3
	Shared      uint32 // bytes of dynamic shared memory
}

// Limits of the register-resident kernels (scan.cu, retention.cu).
const (
	scanMaxStates   = 8  // DS_SCAN_MAXS
	retMaxRows      = 16 // DS_RET_MAXR
	scanChunk       = 32 // tokens of Bm and Cm staged at a time, at most
	blockThreads    = 128
	rowBlockThreads = 256 // one block per row: RMSNorm, softmax, cross-entropy
)

// RowGeometry is the launch of a one-block-per-row kernel (ds_rmsnorm_f32,
// ds_softmax_f32, ds_log_softmax_f32, ds_cross_entropy_f32).
func RowGeometry(rows int) (Geometry, error) {
	if rows > 1<<31-1 {
		return Geometry{}, fmt.Errorf("%w: %d rows", api.ErrUnsupported, rows)
	}
	return Geometry{Grid: driver.Dim3{X: uint32(max(rows, 1)), Y: 1, Z: 1}, Block: driver.Dim3{X: rowBlockThreads, Y: 1, Z: 1}}, nil
}

// ElementGeometry is the launch of a grid-stride element-wise kernel over n
// elements.
func ElementGeometry(n int64) Geometry {
	blocks := min((n+255)/256, 65535)
	return Geometry{Grid: driver.Dim3{X: uint32(max(blocks, 1)), Y: 1, Z: 1}, Block: driver.Dim3{X: 256, Y: 1, Z: 1}}
}

// ScanGeometry is the launch of ds_selective_scan_f32 for B rows, E
// channels and N states: L lanes a channel, the smallest power of two
// that leaves each lane at most 4 states (at most 32 lanes, so at most 8
// states a lane for N = 256), 128/L channels a block, and the chunk of TC
// tokens of Bm and Cm staged in shared memory (returned: the kernel's
// last argument).
func ScanGeometry(B, E, N int) (g Geometry, tc int, err error) {
	if N < 1 || N > 32*scanMaxStates {
		return Geometry{}, 0, fmt.Errorf("%w: a selective scan of %d states (the CUDA kernel takes 1 to %d)", api.ErrUnsupported, N, 32*scanMaxStates)
	}
	L := 1
	for L < 32 && L*4 < N {
		L *= 2
	}
	ch := blockThreads / L
	g.Block = driver.Dim3{X: uint32(L), Y: uint32(ch), Z: 1}
	g.Grid = driver.Dim3{X: uint32(max((E+ch-1)/ch, 1)), Y: uint32(max(B, 1)), Z: 1}
	tc = min(scanChunk, (48<<10)/(2*N*4)) // within the 48 KiB every device gives without opting in
	g.Shared = uint32(2 * tc * N * 4)
	return g, tc, nil
}

// RetentionGeometry is the launch of ds_retention_recurrent_f32 for B*H
// heads of dk rows and dv columns: 32 columns a block, and as many row
// groups (a power of two, at most 32) as keep dk/groups rows a thread
// within the kernel's registers.
func RetentionGeometry(B, H, dk, dv int) (Geometry, error) {
	if dk < 1 || dk > 32*retMaxRows {
		return Geometry{}, fmt.Errorf("%w: retention with dk = %d (the CUDA kernel takes 1 to %d)", api.ErrUnsupported, dk, 32*retMaxRows)
	}
	ry := 4
	for ry*retMaxRows < dk {
		ry *= 2
	}
	var g Geometry
	g.Block = driver.Dim3{X: 32, Y: uint32(ry), Z: 1}
	g.Grid = driver.Dim3{X: uint32(max((dv+31)/32, 1)), Y: uint32(max(B*H, 1)), Z: 1}
	g.Shared = uint32((2*dk + 32*ry) * 4)
	return g, nil
}

// MaxPermuteDims is layout.cu's DS_MAX_PERM_DIMS: dimensions of a
// permutation after merging.
const MaxPermuteDims = 8

// PermutePlan is ds_permute_*'s DsPermute: dst's dimensions, outermost
// first, with size-1 axes dropped and the axes src also walks contiguously
// merged, and for each the stride in src (in units: elements, or bytes).
type PermutePlan struct {
	Dims, Stride []int64
}

// PlanPermute returns the plan of dst = src permuted by perm (dst axis i is
// src axis perm[i]) for the contiguous shape src; perm must be a
// permutation of its axes. More than MaxPermuteDims dimensions left after
// merging is api.ErrUnsupported.
func PlanPermute(src []int, perm []int) (PermutePlan, error) {
	strides := make([]int64, len(src))
	acc := int64(1)
	for i := len(src) - 1; i >= 0; i-- {
		strides[i] = acc
		acc *= int64(src[i])
	}
	var p PermutePlan
	for _, ax := range perm {
		size, stride := int64(src[ax]), strides[ax]
		if size == 1 {
			continue
		}
		// Merge with the axis before when it steps through src as the
		// outer part of one axis with this one.
		if n := len(p.Dims); n > 0 && p.Stride[n-1] == stride*size {
			p.Dims[n-1] *= size
			p.Stride[n-1] = stride
			continue
		}
		p.Dims = append(p.Dims, size)
		p.Stride = append(p.Stride, stride)
	}
	if len(p.Dims) == 0 { // one element
		p.Dims, p.Stride = []int64{1}, []int64{0}
	}
	if len(p.Dims) > MaxPermuteDims {
		return PermutePlan{}, fmt.Errorf("%w: permutation %v of %v needs %d dimensions, the kernel takes %d",
			api.ErrUnsupported, perm, src, len(p.Dims), MaxPermuteDims)
	}
	return p, nil
}

// Bytes lays the plan out as the kernel's struct (ndim, then two arrays of
// MaxPermuteDims 64-bit values, little-endian), for driver.Launch.
func (p PermutePlan) Bytes() driver.Bytes {
	b := make([]byte, 8*(1+2*MaxPermuteDims))
	binary.LittleEndian.PutUint64(b, uint64(len(p.Dims)))
	for i := range p.Dims {
		binary.LittleEndian.PutUint64(b[8*(1+i):], uint64(p.Dims[i]))
		binary.LittleEndian.PutUint64(b[8*(1+MaxPermuteDims+i):], uint64(p.Stride[i]))
	}
	return b
}

// DecodePermutePlan reads a plan back from its bytes.
func DecodePermutePlan(raw []byte) PermutePlan {
	u := func(i int) int64 { return int64(binary.LittleEndian.Uint64(raw[8*i:])) }
	var p PermutePlan
	for d := range int(u(0)) {
		p.Dims = append(p.Dims, u(1+d))
		p.Stride = append(p.Stride, u(1+MaxPermuteDims+d))
	}
	return p
}

// Offset is the kernel's index arithmetic for dst unit i, in Go: the
// offset in src of the unit it reads.
func (p PermutePlan) Offset(i int64) (off int64) {
	rem := i
	for d := len(p.Dims) - 1; d >= 0; d-- {
		idx := rem % p.Dims[d]
		rem /= p.Dims[d]
		off += idx * p.Stride[d]
	}
	return off
}
