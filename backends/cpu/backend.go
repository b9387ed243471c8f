// Package cpu is the default backend: pure Go, parallel over goroutines,
// always compiled in. Importing it registers the backend as "cpu".
//
// Tensors live in Go memory. F32 tensors are []float32, I32 tensors []int32;
// other dtypes are stored as raw little-endian bytes and serve only as
// storage (Convert widens them to F32 for compute), except that BF16 and
// Q8_0 weight matrices are read directly as MatMul's transposed second
// operand and as Gather's table (lowp.go).
//
// Free puts an F32 buffer of 4096 elements or more in a bounded pool that
// later allocations of its size take from (pool.go), and the models' passes
// free their activations as they go (nn.Tape.Release), so a forward pass
// runs in the memory of about one layer whatever GOGC is. Before that, the
// garbage collector let a pass's dead activations pile up to the size of
// the weights at Go's default GOGC of 100 and each pass faulted in fresh
// memory (docs/benchmarks.md); the densessm command still runs at GOGC 25,
// which keeps the other garbage (building a model's weights) small.
package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"slices"
	"unsafe"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/sysmem"
)

func init() {
	api.RegisterBackend("cpu", func(o api.BackendOptions) (api.Backend, error) { return New(o), nil })
}

// Backend is the CPU backend. Its zero value is not usable: call New.
type Backend struct {
	threads int
	// budget is what the Go heap may reach when a large tensor is
	// allocated (see reserve); 0 when unknown.
	budget int64
}

// The CPU backend implements every fused-kernel interface, so nn never
// falls back to its references on it.
var (
	_ api.Backend          = (*Backend)(nil)
	_ api.ConvKernels      = (*Backend)(nil)
	_ api.ScanKernels      = (*Backend)(nil)
	_ api.RotaryKernels    = (*Backend)(nil)
	_ api.RetentionKernels = (*Backend)(nil)
)

// New returns a CPU backend using opts.Threads goroutines (GOMAXPROCS when
// 0 or less) and opts.MaxMemory as its memory budget (when 0: the memory
// the system has available now, plus what the Go heap already holds).
func New(opts api.BackendOptions) *Backend {
	t := opts.Threads
	if t <= 0 {
		t = runtime.GOMAXPROCS(0)
	}
	budget := opts.MaxMemory
	if budget <= 0 {
		if avail, ok := sysmem.Available(); ok {
			budget = avail + heapBytes()
		}
	}
	return &Backend{threads: t, budget: budget}
}

// MaxMemory returns the memory budget the backend enforces on large
// allocations, in bytes (0: none).
func (b *Backend) MaxMemory() int64 { return b.budget }

// reserveMin is the smallest allocation that reserve checks against the
// budget: smaller ones cannot take the process far past it, and reading the
// heap's size for each would cost more than the allocation.
const reserveMin = 8 << 20

// reserve panics with an error wrapping api.ErrOutOfMemory when allocating
// n more bytes would take the Go heap past the budget, after one garbage
// collection to make sure the heap's dead objects are not what fills it.
// Go cannot recover from running out of memory (the runtime aborts), so
// this is where an over-large model, sequence or matrix becomes an error.
func (b *Backend) reserve(n uint64) {
	if b.budget <= 0 || n < reserveMin {
		return
	}
	if n > uint64(b.budget) || uint64(heapBytes())+n > uint64(b.budget) {
		runtime.GC()
		if used := heapBytes(); uint64(used)+n > uint64(b.budget) {
			api.Panicf(api.ErrOutOfMemory, "a tensor of %s would take the process past its memory budget of %s (%s in use; set a budget with --max-memory or BackendOptions.MaxMemory)",
				sysmem.Format(int64(min(n, math.MaxInt64))), sysmem.Format(b.budget), sysmem.Format(used))
		}
	}
}

// heapBytes returns the bytes of Go heap objects, live or not yet swept.
func heapBytes() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// Name returns "cpu".
func (b *Backend) Name() string { return "cpu" }

// GEMMKernel names the GEMM micro-kernel chosen for this CPU at start-up:
// "avx512", "avx2" or "generic".
func (b *Backend) GEMMKernel() string { return gemmBest.name }

// Threads returns the number of goroutines kernels split work across.
func (b *Backend) Threads() int { return b.threads }

// Tensor is the CPU backend's tensor. Exactly one of f32, i32 and raw holds
// the data, according to dtype.
type Tensor struct {
	b     *Backend
	dtype api.DType
	shape api.Shape
	f32   []float32
	i32   []int32
	raw   []byte
}

// DType returns the element type.
func (t *Tensor) DType() api.DType { return t.dtype }

// Shape returns the shape; callers must not modify it.
func (t *Tensor) Shape() api.Shape { return t.shape }

// Backend returns the backend that owns t.
func (t *Tensor) Backend() api.Backend { return t.b }

// HostFloat32s returns the storage of an F32 tensor without copying; writes
// change the tensor. It panics for other dtypes.
func (t *Tensor) HostFloat32s() []float32 {
	if t.dtype != api.F32 {
		api.Panicf(api.ErrDType, "HostFloat32s of a %s tensor", t.dtype)
	}
	return t.f32
}

// HostInt32s returns the storage of an I32 tensor without copying. It panics
// for other dtypes.
func (t *Tensor) HostInt32s() []int32 {
	if t.dtype != api.I32 {
		api.Panicf(api.ErrDType, "HostInt32s of a %s tensor", t.dtype)
	}
	return t.i32
}

// bytes returns the storage as raw bytes, aliasing it.
func (t *Tensor) bytes() []byte {
	switch t.dtype {
	case api.F32:
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(t.f32))), 4*len(t.f32))
	case api.I32:
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(t.i32))), 4*len(t.i32))
	}
	return t.raw
}

func (t *Tensor) numel() int { return t.shape.NumElements() }

// Alloc returns a zero-filled tensor.
func (b *Backend) Alloc(dtype api.DType, shape ...int) api.Tensor {
	s := api.Shape(shape).Clone()
	if err := s.Validate(); err != nil {
		panic(err)
	}
	if !dtype.Valid() {
		api.Panicf(api.ErrDType, "alloc of dtype %v", dtype)
	}
	n := s.NumElements()
	if blk := dtype.Block(); blk > 1 && (len(s) == 0 || s[len(s)-1]%blk != 0) {
		api.Panicf(api.ErrShape, "alloc %s%v: the last axis must be a multiple of %d", dtype, s, blk)
	}
	if n > 1<<46 || uint64(dtype.Bytes(n)) > 1<<46 {
		api.Panicf(api.ErrOutOfMemory, "alloc %s%v", dtype, s)
	}
	if dtype != api.F32 { // F32 storage is checked by allocF32, which may reuse a pooled buffer
		b.reserve(uint64(dtype.Bytes(n)))
	}
	t := &Tensor{b: b, dtype: dtype, shape: s}
	switch dtype {
	case api.F32:
		t.f32 = b.allocF32(n) // pool.go
	case api.I32:
		t.i32 = make([]int32, n)
	default:
		t.raw = make([]byte, dtype.Bytes(n))
	}
	return t
}

// WrapFloat32s returns an F32 tensor of the given shape whose storage is
// data itself (no copy): writes through either are seen in the other. The
// plugin host uses it to hand out logits it received without copying
// them again. len(data) must equal the shape's element count.
func (b *Backend) WrapFloat32s(data []float32, shape ...int) api.Tensor {
	s := api.Shape(shape).Clone()
	if err := s.Validate(); err != nil {
		panic(err)
	}
	if s.NumElements() != len(data) {
		api.Panicf(api.ErrShape, "%d values for shape %v", len(data), s)
	}
	return &Tensor{b: b, dtype: api.F32, shape: s, f32: data}
}

// Reshape returns a view of t with a new shape of the same element count.
func (b *Backend) Reshape(t api.Tensor, shape ...int) api.Tensor {
	src := b.own(t)
	s := api.Shape(shape).Clone()
	if err := s.Validate(); err != nil {
		panic(err)
	}
	if s.NumElements() != src.numel() {
		api.Panicf(api.ErrShape, "reshape %v to %v", src.shape, s)
	}
	v := *src
	v.shape = s
	return &v
}

// Upload copies little-endian raw elements into dst.
func (b *Backend) Upload(dst api.Tensor, src []byte) {
	d := b.own(dst)
	raw := d.bytes()
	if len(src) != len(raw) {
		api.Panicf(api.ErrShape, "upload of %d bytes into %s%v", len(src), d.dtype, d.shape)
	}
	copy(raw, src) // the host is little-endian (amd64, arm64)
}

// Download copies src's elements, little-endian, into dst.
func (b *Backend) Download(dst []byte, src api.Tensor) {
	s := b.own(src)
	raw := s.bytes()
	if len(dst) != len(raw) {
		api.Panicf(api.ErrShape, "download of %s%v into %d bytes", s.dtype, s.shape, len(dst))
	}
	copy(dst, raw)
}

// Free hands an F32 tensor's storage back to the backend's buffer pool
// (pool.go), from which Alloc reuses it; t and every view of it made by
// Reshape must not be used afterwards. Storage the pool did not hand out
// (small tensors, other dtypes, WrapFloat32s memory) or has taken back
// already is left to the garbage collector, so freeing a tensor twice, or
// a tensor of another backend, does nothing.
func (b *Backend) Free(t api.Tensor) {
	if c, ok := t.(*Tensor); ok && c != nil && c.dtype == api.F32 {
		b.freeF32(c)
	}
}

// Fill sets every element of dst to v.
func (b *Backend) Fill(dst api.Tensor, v float32) {
	d := b.f32(dst, "fill")
	t := fillTasks.get()
	*t = fillTask{dst: d.f32, v: v}
	b.run(len(d.f32), minGrain, t)
	fillTasks.put(t)
}

type fillTask struct {
	dst []float32
	v   float32
}

var fillTasks taskPool[fillTask]

func (t *fillTask) run(lo, hi int) {
	s := t.dst[lo:hi]
	for i := range s {
		s[i] = t.v
	}
}

// Copy copies src into dst (same dtype and element count).
func (b *Backend) Copy(dst, src api.Tensor) {
	d, s := b.own(dst), b.own(src)
	if d.dtype != s.dtype {
		api.Panicf(api.ErrDType, "copy %s%v into %s%v", s.dtype, s.shape, d.dtype, d.shape)
	}
	if d.numel() != s.numel() {
		api.Panicf(api.ErrShape, "copy %s%v into %s%v", s.dtype, s.shape, d.dtype, d.shape)
	}
	copy(d.bytes(), s.bytes())
}

// Convert converts element-wise between dtypes of the same element count.
func (b *Backend) Convert(dst, src api.Tensor) {
	d, s := b.own(dst), b.own(src)
	if d.numel() != s.numel() {
		api.Panicf(api.ErrShape, "convert %s%v into %s%v", s.dtype, s.shape, d.dtype, d.shape)
	}
	switch {
	case d.dtype == s.dtype:
		copy(d.bytes(), s.bytes())
	case d.dtype == api.F32:
		if s.dtype == api.I32 {
			for i, v := range s.i32 {
				d.f32[i] = float32(v)
			}
			return
		}
		if err := api.DecodeFloat32(d.f32, s.dtype, s.raw); err != nil {
			panic(fmt.Errorf("convert %s to F32: %w", s.dtype, err))
		}
	case s.dtype == api.F32 && (d.dtype == api.F16 || d.dtype == api.BF16 || d.dtype == api.F64 || d.dtype == api.Q8_0):
		if err := api.EncodeFloat32(d.raw, d.dtype, s.f32); err != nil {
			panic(fmt.Errorf("convert F32 to %s: %w", d.dtype, err))
		}
	case d.dtype == api.I32 && s.dtype == api.I64:
		for i := range d.i32 {
			v := int64(binary.LittleEndian.Uint64(s.raw[8*i:]))
			if v < math.MinInt32 || v > math.MaxInt32 {
				api.Panicf(api.ErrOutOfRange, "convert I64 value %d to I32", v)
			}
			d.i32[i] = int32(v)
		}
	default:
		api.Panicf(api.ErrUnsupported, "convert %s to %s", s.dtype, d.dtype)
	}
}

// own returns t as this backend's tensor, panicking on a foreign or nil one.
func (b *Backend) own(t api.Tensor) *Tensor {
	c, ok := t.(*Tensor)
	if !ok || c == nil {
		api.Panicf(api.ErrDType, "cpu backend got a %T tensor", t)
	}
	return c
}

// f32 returns t as an F32 tensor of this backend; op names the kernel for
// the error message.
func (b *Backend) f32(t api.Tensor, op string) *Tensor {
	c := b.own(t)
	if c.dtype != api.F32 {
		api.Panicf(api.ErrDType, "%s: want F32, got %s%v", op, c.dtype, c.shape)
	}
	return c
}

// f32OrNil is f32 for an optional argument: nil stays nil.
func (b *Backend) f32OrNil(t api.Tensor, op string) *Tensor {
	if t == nil {
		return nil
	}
	return b.f32(t, op)
}

// i32 returns t as an I32 tensor of this backend.
func (b *Backend) i32(t api.Tensor, op string) *Tensor {
	c := b.own(t)
	if c.dtype != api.I32 {
		api.Panicf(api.ErrDType, "%s: want I32, got %s%v", op, c.dtype, c.shape)
	}
	return c
}

// wantShape panics with ErrShape unless t has exactly the given shape. It
// allocates only when it fails: the message gets a copy of shape, so the
// caller's argument slice does not escape.
func wantShape(op, what string, t *Tensor, shape ...int) {
	if !t.shape.Equal(shape) {
		api.Panicf(api.ErrShape, "%s: %s has shape %v, want %v", op, what, t.shape, slices.Clone(shape))
	}
}
