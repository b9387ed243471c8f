package api

import "fmt"

// Tensor is a dense, contiguous, row-major array owned by a Backend. Its
// memory may live on a device: read and write it only through the Backend's
// Upload and Download, or a backend's own host accessors.
//
// Tensors are values of the backend that made them; passing a tensor to
// another backend's kernels is a programmer error (the kernel panics).
type Tensor interface {
	DType() DType
	Shape() Shape
	Backend() Backend
}

// BackendOptions configures a backend at construction.
type BackendOptions struct {
	// Threads is the number of worker goroutines (CPU) or streams a backend
	// may use; 0 means runtime.GOMAXPROCS(0). Kernels split work statically
	// by this number, so the same inputs and the same Threads give the same
	// bits on every run.
	Threads int
	// MaxMemory caps, in bytes, what the process may hold when the backend
	// allocates a large tensor: an allocation that would take the process
	// past it fails with an error wrapping ErrOutOfMemory instead of
	// running the machine out of memory (which Go cannot recover from).
	// 0 means the memory available to the process when the backend is
	// made; backends on a device apply it to device memory.
	MaxMemory int64
}

// Validate reports options out of their domain (negative threads or
// memory), wrapping ErrConfig.
func (o BackendOptions) Validate() error {
	if o.Threads < 0 {
		return fmt.Errorf("threads %d: must be 0 (every core) or more: %w", o.Threads, ErrConfig)
	}
	if o.MaxMemory < 0 {
		return fmt.Errorf("memory budget %d bytes: must not be negative: %w", o.MaxMemory, ErrConfig)
	}
	return nil
}

// Backend owns memory and runs kernels on it. It is the contract between the
// model code (nn, architectures) and a device: the pure-Go CPU backend, a
// CUDA backend served from a plugin process, or any third party's.
//
// Error model: allocation failures and misuse (wrong shapes, dtypes, foreign
// tensors) panic with an error wrapping ErrOutOfMemory, ErrShape or ErrDType.
// Model code builds graphs without checking an error per op; every public
// entry point defers Recover to turn such panics into returned errors.
//
// Methods are safe for concurrent use on distinct output tensors.
type Backend interface {
	// Name returns the registered name ("cpu", "cuda").
	Name() string
	// Threads returns the parallelism the backend was built with.
	Threads() int

	// Alloc returns a new zero-filled tensor.
	Alloc(dtype DType, shape ...int) Tensor
	// Reshape returns a tensor with the same storage and a new shape of the
	// same element count (no copy; writes through one are seen in the other).
	Reshape(t Tensor, shape ...int) Tensor
	// Upload copies little-endian raw elements into dst;
	// len(src) == dst.DType().Bytes(dst.Shape().NumElements()).
	Upload(dst Tensor, src []byte)
	// Download copies src's elements, little-endian, into dst;
	// len(dst) == src.DType().Bytes(src.Shape().NumElements()).
	Download(dst []byte, src Tensor)
	// Free releases t's memory now instead of at garbage collection (the
	// CPU backend keeps large F32 buffers for its next allocations). t, and
	// every view of it made by Reshape, must not be used afterwards.
	Free(t Tensor)

	Kernels
}

// Float32s downloads an F32 tensor into a new host slice.
func Float32s(t Tensor) []float32 {
	if t.DType() != F32 {
		Panicf(ErrDType, "Float32s of a %s tensor", t.DType())
	}
	if h, ok := t.(HostFloat32s); ok {
		return append([]float32(nil), h.HostFloat32s()...)
	}
	n := t.Shape().NumElements()
	raw := make([]byte, 4*n)
	t.Backend().Download(raw, t)
	out := make([]float32, n)
	if err := DecodeFloat32(out, F32, raw); err != nil {
		panic(err)
	}
	return out
}

// HostView is an F32 tensor's values on the host (ViewFloat32s): the
// tensor's own memory where its backend exposes it (HostFloat32s), else a
// downloaded copy that WriteBack uploads.
type HostView struct {
	V []float32
	t Tensor // set when V is a copy
}

// ViewFloat32s returns t's values on the host, without a copy where the
// backend allows it: for reading, and for changing in place followed by
// WriteBack.
func ViewFloat32s(t Tensor) HostView {
	if h, ok := t.(HostFloat32s); ok && t.DType() == F32 {
		return HostView{V: h.HostFloat32s()}
	}
	return HostView{V: Float32s(t), t: t}
}

// WriteBack uploads a copied view's values into its tensor (nothing for a
// view of the tensor's own memory).
func (h HostView) WriteBack() {
	if h.t == nil {
		return
	}
	raw := make([]byte, 4*len(h.V))
	if err := EncodeFloat32(raw, F32, h.V); err != nil {
		panic(err)
	}
	h.t.Backend().Upload(h.t, raw)
}

// FromFloat32s allocates an F32 tensor of the given shape on b and uploads
// data into it; len(data) must equal the shape's element count.
func FromFloat32s(b Backend, data []float32, shape ...int) Tensor {
	if Shape(shape).NumElements() != len(data) {
		Panicf(ErrShape, "%d values for shape %v", len(data), shape)
	}
	t := b.Alloc(F32, shape...)
	if h, ok := t.(HostFloat32s); ok {
		copy(h.HostFloat32s(), data)
		return t
	}
	raw := make([]byte, 4*len(data))
	if err := EncodeFloat32(raw, F32, data); err != nil {
		panic(err)
	}
	b.Upload(t, raw)
	return t
}

// FromInt32s allocates an I32 tensor of the given shape on b and uploads ids
// into it; len(ids) must equal the shape's element count.
func FromInt32s(b Backend, ids []int32, shape ...int) Tensor {
	if Shape(shape).NumElements() != len(ids) {
		Panicf(ErrShape, "%d ids for shape %v", len(ids), shape)
	}
	t := b.Alloc(I32, shape...)
	raw := make([]byte, 4*len(ids))
	for i, v := range ids {
		u := uint32(v)
		raw[4*i], raw[4*i+1], raw[4*i+2], raw[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	b.Upload(t, raw)
	return t
}
