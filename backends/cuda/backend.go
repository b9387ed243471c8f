// Package cuda is the CUDA backend: an api.Backend whose tensors live in
// GPU memory, registered as "cuda" by importing this package (the default
// densessm binary does not: it ships as the plugin
// cmd/densessm-backend-cuda).
//
// Tensors are device buffers from a caching allocator with a memory cap
// (alloc.go); Upload and Download go through a pinned staging buffer; the
// kernels are cuBLAS (MatMul, float32 arithmetic unless Options.GEMM asks
// for TF32 or BF16; Retention's products) and the CUDA C kernels
// of backends/cuda/kernels (compiled with NVRTC at first use), all queued
// on one stream. The ops without a CUDA kernel yet (Unwritten lists them)
// run on the host through the CPU backend: the tensors are downloaded, the
// CPU kernel runs and the outputs are uploaded (Options.HostFallback); with
// the fallback off they panic with an error wrapping api.ErrUnsupported
// that names the op.
//
// Everything above the device is written against a small interface
// (device.go) with a second implementation in host memory (fake.go), on
// which the tests run the compliance suite without a GPU.
package cuda

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/backends/cuda/driver"
)

// Environment variables of the backend.
const (
	// FakeEnv set to 1 makes New use the fake device (host memory, the
	// kernels modelled in Go): how the plugin's wiring is tested without a
	// GPU. Never for real work.
	FakeEnv = "DENSESSM_CUDA_FAKE"
	// FallbackEnv set to 0 turns the host fallback off: an op without a
	// CUDA kernel then panics with api.ErrUnsupported naming it.
	FallbackEnv = "DENSESSM_CUDA_HOST_FALLBACK"
	// DeviceEnv selects the device ordinal (default 0).
	DeviceEnv = "DENSESSM_CUDA_DEVICE"
	// GEMMEnv selects MatMul's GEMM precision, Options.GEMM: fp32 (the
	// default), tf32 or bf16.
	GEMMEnv = "DENSESSM_CUDA_GEMM"
)

// GEMMPrecision is the arithmetic of MatMul's cuBLAS GEMMs (Options.GEMM).
type GEMMPrecision uint8

// The GEMM precisions.
const (
	// GEMMFP32 multiplies float32 operands in float32 (cublasSgemm,
	// cuBLAS's default math mode: no TF32), as the CPU backend does.
	GEMMFP32 GEMMPrecision = iota
	// GEMMTF32 lets tensor cores round the float32 operands to TF32 (10
	// explicit mantissa bits) and accumulate in float32 (cublasSgemm under
	// CUBLAS_TF32_TENSOR_OP_MATH).
	GEMMTF32
	// GEMMBF16 multiplies BF16 operands, accumulating in float32
	// (cublasGemmEx, CUBLAS_COMPUTE_32F): F32 operands are rounded to BF16
	// into scratch first, BF16 weights are used as stored.
	GEMMBF16
)

var gemmPrecisionNames = [...]string{GEMMFP32: "fp32", GEMMTF32: "tf32", GEMMBF16: "bf16"}

// String returns the precision's name as GEMMEnv takes it.
func (p GEMMPrecision) String() string {
	if int(p) < len(gemmPrecisionNames) {
		return gemmPrecisionNames[p]
	}
	return fmt.Sprintf("GEMMPrecision(%d)", uint8(p))
}

// ParseGEMMPrecision returns the precision named fp32, tf32 or bf16 (in
// any case); another name is an error wrapping api.ErrConfig.
func ParseGEMMPrecision(name string) (GEMMPrecision, error) {
	for p, n := range gemmPrecisionNames {
		if strings.EqualFold(name, n) {
			return GEMMPrecision(p), nil
		}
	}
	return 0, fmt.Errorf("GEMM precision %q: want fp32, tf32 or bf16: %w", name, api.ErrConfig)
}

func init() {
	api.RegisterBackend("cuda", func(o api.BackendOptions) (api.Backend, error) {
		b, err := New(o)
		if err != nil {
			return nil, err
		}
		return b, nil
	})
}

// Options configures a backend beyond api.BackendOptions.
type Options struct {
	api.BackendOptions
	// Device is the CUDA device ordinal.
	Device int
	// HostFallback runs the ops that have no CUDA kernel on the host
	// (slowly: their tensors are copied both ways); without it they panic
	// with api.ErrUnsupported.
	HostFallback bool
	// Fake uses the fake device in host memory instead of a GPU, with
	// FakeMemory bytes of "device" memory (default 1 GiB).
	Fake       bool
	FakeMemory int64
	// Staging is the size of the pinned buffer Upload and Download go
	// through, in bytes (default 8 MiB); larger copies go in pieces.
	Staging int
	// GEMM is the arithmetic of MatMul (GEMMEnv for New): GEMMFP32, the
	// default, is float32 throughout, as the CPU backend; GEMMTF32 rounds
	// the operands to TF32 on tensor cores, accumulating in float32 (about
	// 2^-10 relative error a product); GEMMBF16 multiplies BF16 operands
	// with float32 accumulation (cublasGemmEx): the activations are
	// rounded to BF16 a call (up to 2^-8 relative error each), F32
	// weights too, while BF16 weights (api.BuildOptions.Weights = BF16)
	// are read as stored, without FP32's widening pass. A Q8_0 weight is
	// dequantized to F32 and multiplied by cublasSgemm (in TF32 under
	// GEMMTF32, in float32 otherwise). Retention's products stay float32
	// under every setting.
	GEMM GEMMPrecision
}

// New returns a backend on the GPU, or on the fake device when
// DENSESSM_CUDA_FAKE=1, with the host fallback unless
// DENSESSM_CUDA_HOST_FALLBACK=0, on device DENSESSM_CUDA_DEVICE, with
// MatMul's precision from DENSESSM_CUDA_GEMM (an unknown value is an error
// wrapping api.ErrConfig that names the variable). Without a driver or a
// device the error is the driver's *LoadError (or cuInit's), which wraps
// api.ErrUnsupported.
func New(o api.BackendOptions) (*Backend, error) {
	opts := Options{BackendOptions: o, HostFallback: os.Getenv(FallbackEnv) != "0", Fake: os.Getenv(FakeEnv) == "1"}
	if v := os.Getenv(DeviceEnv); v != "" {
		if _, err := fmt.Sscan(v, &opts.Device); err != nil || opts.Device < 0 {
			return nil, fmt.Errorf("%s=%q: not a device ordinal: %w", DeviceEnv, v, api.ErrConfig)
		}
	}
	if v := os.Getenv(GEMMEnv); v != "" {
		p, err := ParseGEMMPrecision(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", GEMMEnv, err)
		}
		opts.GEMM = p
	}
	return NewWith(opts)
}

// NewWith returns a backend with the given options.
func NewWith(opts Options) (*Backend, error) {
	if err := opts.BackendOptions.Validate(); err != nil {
		return nil, err
	}
	if int(opts.GEMM) >= len(gemmPrecisionNames) {
		return nil, fmt.Errorf("cuda: Options.GEMM is %v, not a GEMM precision: %w", opts.GEMM, api.ErrConfig)
	}
	var dev device
	var err error
	if opts.Fake {
		dev = newFakeDevice(cmp(opts.FakeMemory, 1<<30))
	} else {
		dev, err = openRealDevice(opts.Device)
		if err != nil {
			return nil, err
		}
	}
	return newBackend(dev, opts)
}

// newBackend makes the backend on dev (the tests' emulated device too).
func newBackend(dev device, opts Options) (*Backend, error) {
	free, total, err := dev.memInfo()
	if err != nil {
		dev.close()
		return nil, err
	}
	capBytes := opts.MaxMemory
	if capBytes == 0 {
		capBytes = free - free/10
	}
	capBytes = min(capBytes, total)
	threads := opts.Threads
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	b := &Backend{
		dev:      dev,
		alloc:    newAllocator(dev, capBytes),
		threads:  threads,
		fallback: opts.HostFallback,
		gemm:     opts.GEMM,
		stageLen: cmp(int64(opts.Staging), 8<<20),
		hostOps:  map[string]int{},
	}
	b.host = cpu.New(api.BackendOptions{Threads: threads})
	return b, nil
}

// cmp returns v, or def when v is 0 or less.
func cmp[T int | int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Backend is the CUDA backend.
type Backend struct {
	dev      device
	alloc    *allocator
	threads  int
	fallback bool
	gemm     GEMMPrecision // MatMul's
	host     *cpu.Backend  // the host fallback's kernels

	stageMu  sync.Mutex
	stageLen int64
	stage    staging // allocated at first use

	opsMu   sync.Mutex
	hostOps map[string]int // host fallback calls by op

	constMu    sync.Mutex
	consts     map[string]*Tensor // constF32's, by their bytes
	constBytes int64
}

// Name returns "cuda".
func (b *Backend) Name() string { return "cuda" }

// Threads returns the threads of the host fallback's CPU backend.
func (b *Backend) Threads() int { return b.threads }

// Device describes the device ("NVIDIA H100 80GB HBM3 (sm_90, ...)", or
// the fake device).
func (b *Backend) Device() string { return b.dev.describe() }

// MemStats returns the caching allocator's counters.
func (b *Backend) MemStats() MemStats { return b.alloc.stats() }

// HostOps returns how many times each op ran through the host fallback.
func (b *Backend) HostOps() map[string]int {
	b.opsMu.Lock()
	defer b.opsMu.Unlock()
	out := make(map[string]int, len(b.hostOps))
	for k, v := range b.hostOps {
		out[k] = v
	}
	return out
}

// Trim gives the allocator's cached blocks back to the device.
func (b *Backend) Trim() { b.alloc.trim() }

// Sync waits for all queued device work.
func (b *Backend) Sync() { b.check("synchronize", b.dev.sync()) }

// check panics with err (a device error) unless it is nil.
func (b *Backend) check(what string, err error) {
	if err != nil {
		panic(fmt.Errorf("cuda: %s: %w", what, err))
	}
}

// buffer is the device memory of a tensor and its views; blk is nil for a
// tensor of no elements.
type buffer struct {
	blk *block
}

// Tensor is a tensor in device memory.
type Tensor struct {
	b     *Backend
	buf   *buffer
	dtype api.DType
	shape api.Shape
}

// DType returns the element type.
func (t *Tensor) DType() api.DType { return t.dtype }

// Shape returns the shape.
func (t *Tensor) Shape() api.Shape { return t.shape }

// Backend returns the backend that owns the tensor.
func (t *Tensor) Backend() api.Backend { return t.b }

// ptr is the tensor's device address (0 for no elements).
func (t *Tensor) ptr() driver.DevicePtr {
	if t.buf.blk == nil {
		return 0
	}
	return t.buf.blk.ptr
}

func (t *Tensor) numel() int { return t.shape.NumElements() }

// nbytes is the tensor's storage in bytes.
func (t *Tensor) nbytes() int { return t.dtype.Bytes(t.numel()) }

// Alloc returns a zero-filled tensor in device memory.
func (b *Backend) Alloc(dtype api.DType, shape ...int) api.Tensor {
	s := api.Shape(shape).Clone()
	if err := s.Validate(); err != nil {
		panic(err)
	}
	if !dtype.Valid() {
		api.Panicf(api.ErrDType, "cuda: alloc of dtype %v", dtype)
	}
	if blk := dtype.Block(); blk > 1 && (len(s) == 0 || s[len(s)-1]%blk != 0) {
		api.Panicf(api.ErrShape, "cuda: alloc %s%v: the last axis must be a multiple of %d", dtype, s, blk)
	}
	n := s.NumElements()
	if n > 1<<46 || int64(dtype.Bytes(n)) > 1<<46 {
		api.Panicf(api.ErrOutOfMemory, "cuda: alloc %s%v", dtype, s)
	}
	t := &Tensor{b: b, buf: &buffer{}, dtype: dtype, shape: s}
	nb := int64(dtype.Bytes(n))
	if nb == 0 {
		return t
	}
	blk, err := b.alloc.get(nb)
	if err != nil {
		panic(fmt.Errorf("alloc %s%v: %w", dtype, s, err))
	}
	t.buf.blk = blk
	runtime.AddCleanup(t.buf, b.alloc.put, blk)
	if s, ok := b.dev.(tensorSizer); ok {
		s.tensorAt(blk.ptr, nb)
	}
	b.check("zero-fill", b.dev.fill32(blk.ptr, 0, (nb+3)/4))
	return t
}

// Reshape returns a view of t with a new shape of the same element count.
func (b *Backend) Reshape(t api.Tensor, shape ...int) api.Tensor {
	src := b.own(t)
	s := api.Shape(shape).Clone()
	if err := s.Validate(); err != nil {
		panic(err)
	}
	if s.NumElements() != src.numel() {
		api.Panicf(api.ErrShape, "cuda: reshape %v to %v", src.shape, s)
	}
	if blk := src.dtype.Block(); blk > 1 && (len(s) == 0 || s[len(s)-1]%blk != 0) {
		api.Panicf(api.ErrShape, "cuda: reshape %s%v to %v: the last axis must be a multiple of %d", src.dtype, src.shape, s, blk)
	}
	v := *src
	v.shape = s
	return &v
}

// Free hands t's device memory back to the allocator's cache. t and its
// views must not be used afterwards; a second Free, or a tensor of
// another backend, does nothing.
func (b *Backend) Free(t api.Tensor) {
	if c, ok := t.(*Tensor); ok && c != nil && c.b == b && c.buf.blk != nil {
		b.alloc.put(c.buf.blk)
	}
}

// Upload copies little-endian raw elements into dst through the pinned
// staging buffer, a piece at a time, and returns when they are on the
// device.
func (b *Backend) Upload(dst api.Tensor, src []byte) {
	d := b.own(dst)
	if len(src) != d.nbytes() {
		api.Panicf(api.ErrShape, "cuda: upload of %d bytes into %s%v", len(src), d.dtype, d.shape)
	}
	b.upload(d.ptr(), src)
}

// Download copies src's elements, little-endian, into dst through the
// pinned staging buffer, after the work queued before it is done.
func (b *Backend) Download(dst []byte, src api.Tensor) {
	s := b.own(src)
	if len(dst) != s.nbytes() {
		api.Panicf(api.ErrShape, "cuda: download of %s%v into %d bytes", s.dtype, s.shape, len(dst))
	}
	b.download(dst, s.ptr())
}

// stagingBuffer returns the pinned buffer; the caller holds stageMu.
func (b *Backend) stagingBuffer() staging {
	if b.stage.bytes == nil {
		s, err := b.dev.hostAlloc(int(b.stageLen))
		b.check("pinned staging buffer", err)
		b.stage = s
	}
	return b.stage
}

func (b *Backend) upload(dst driver.DevicePtr, src []byte) {
	if len(src) == 0 {
		return
	}
	b.stageMu.Lock()
	defer b.stageMu.Unlock()
	st := b.stagingBuffer()
	for off := 0; off < len(src); {
		n := copy(st.bytes, src[off:])
		b.check("upload", b.dev.copyHtoD(dst+driver.DevicePtr(off), st, 0, n))
		b.check("upload", b.dev.sync()) // the buffer is refilled next
		off += n
	}
}

func (b *Backend) download(dst []byte, src driver.DevicePtr) {
	if len(dst) == 0 {
		return
	}
	b.stageMu.Lock()
	defer b.stageMu.Unlock()
	st := b.stagingBuffer()
	for off := 0; off < len(dst); {
		n := min(len(st.bytes), len(dst)-off)
		b.check("download", b.dev.copyDtoH(st, 0, n, src+driver.DevicePtr(off)))
		b.check("download", b.dev.sync())
		copy(dst[off:off+n], st.bytes[:n])
		off += n
	}
}

// Close gives the cached blocks and the staging buffer back and releases
// the device. Tensors of the backend must not be used afterwards.
func (b *Backend) Close() error {
	b.freeConsts()
	b.alloc.trim()
	b.stageMu.Lock()
	if b.stage.bytes != nil {
		_ = b.dev.hostFree(b.stage)
		b.stage = staging{}
	}
	b.stageMu.Unlock()
	return b.dev.close()
}

// own returns t as this backend's tensor, panicking on a foreign or nil one.
func (b *Backend) own(t api.Tensor) *Tensor {
	c, ok := t.(*Tensor)
	if !ok || c == nil || c.b != b {
		api.Panicf(api.ErrDType, "cuda backend got a %T tensor that is not its own", t)
	}
	if c.buf.blk != nil && c.buf.blk.freed.Load() {
		api.Panicf(api.ErrInternal, "cuda: a %s%v tensor used after Free", c.dtype, c.shape)
	}
	return c
}

// f32 returns t as an F32 tensor of this backend.
func (b *Backend) f32(t api.Tensor, op string) *Tensor {
	c := b.own(t)
	if c.dtype != api.F32 {
		api.Panicf(api.ErrDType, "cuda: %s: want F32, got %s%v", op, c.dtype, c.shape)
	}
	return c
}

// f32OrNil is f32 for an optional argument.
func (b *Backend) f32OrNil(t api.Tensor, op string) *Tensor {
	if t == nil {
		return nil
	}
	return b.f32(t, op)
}

// ptrOf is t's device address, 0 for nil.
func ptrOf(t *Tensor) driver.DevicePtr {
	if t == nil {
		return 0
	}
	return t.ptr()
}

// wantShape panics with ErrShape unless t has exactly the given shape.
func wantShape(op, what string, t *Tensor, shape ...int) {
	if !t.shape.Equal(shape) {
		api.Panicf(api.ErrShape, "cuda: %s: %s has shape %v, want %v", op, what, t.shape, slices.Clone(shape))
	}
}
