package driver

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"github.com/densessm/densessm/api"
)

// Handles of the driver API. They are opaque: copy them, compare them with
// zero, pass them back.
type (
	Device    int32   // CUdevice: an ordinal's handle from DeviceGet
	DevicePtr uint64  // CUdeviceptr: an address in device memory
	Context   uintptr // CUcontext
	Module    uintptr // CUmodule
	Function  uintptr // CUfunction
	Stream    uintptr // CUstream; 0 is the legacy default stream
	Event     uintptr // CUevent
)

// Result is a CUresult, the status every driver call returns.
type Result int32

// Results the backend tells apart.
const (
	Success           Result = 0
	ErrorOutOfMemory  Result = 2
	ErrorNoDevice     Result = 100
	ErrorNotReady     Result = 600
	ErrorStubLibrary  Result = 34
	ErrorInvalidValue Result = 1
)

// DeviceAttribute is a CUdevice_attribute.
type DeviceAttribute int32

// The attributes the backend reads (values from cuda.h).
const (
	AttrMaxThreadsPerBlock        DeviceAttribute = 1
	AttrMaxSharedMemoryPerBlock   DeviceAttribute = 8
	AttrWarpSize                  DeviceAttribute = 10
	AttrMultiprocessorCount       DeviceAttribute = 16
	AttrComputeCapabilityMajor    DeviceAttribute = 75
	AttrComputeCapabilityMinor    DeviceAttribute = 76
	AttrMaxSharedMemoryPerBlockOp DeviceAttribute = 97 // opt-in maximum (cuFuncSetAttribute)
)

// Flags of MemHostAlloc, StreamCreate and EventCreate (cuda.h).
const (
	HostAllocPortable     = 0x1
	StreamNonBlocking     = 0x1
	EventDefault          = 0x0
	EventDisableTiming    = 0x2
	jitErrorLogBuffer     = 5 // CU_JIT_ERROR_LOG_BUFFER
	jitErrorLogBufferSize = 6 // CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
)

// Error is a failed driver call: which call, its CUresult, and the
// driver's name and description of it. An out-of-memory result wraps
// api.ErrOutOfMemory.
type Error struct {
	Call string
	Code Result
	Name string // e.g. CUDA_ERROR_INVALID_VALUE
	Msg  string // the driver's sentence
}

func (e *Error) Error() string {
	return fmt.Sprintf("cuda: %s: %s (%d): %s", e.Call, e.Name, int32(e.Code), e.Msg)
}

// Unwrap gives api.ErrOutOfMemory for CUDA_ERROR_OUT_OF_MEMORY, nil otherwise.
func (e *Error) Unwrap() error {
	if e.Code == ErrorOutOfMemory {
		return api.ErrOutOfMemory
	}
	return nil
}

// Driver is the CUDA driver API (libcuda), every function resolved once
// when it is loaded. Calls act on the context current on the calling OS
// thread (cuCtxSetCurrent): a caller that is not pinned to its thread
// (runtime.LockOSThread) makes its context current before its calls.
type Driver struct {
	Path    string // the library that was loaded
	Version int    // cuDriverGetVersion: 1000*major + 10*minor, e.g. 12080

	cuInit                    func(flags uint32) Result
	cuDriverGetVersion        func(v *int32) Result
	cuGetErrorName            func(r Result, s **byte) Result
	cuGetErrorString          func(r Result, s **byte) Result
	cuDeviceGetCount          func(n *int32) Result
	cuDeviceGet               func(d *Device, ordinal int32) Result
	cuDeviceGetName           func(name *byte, n int32, d Device) Result
	cuDeviceGetAttribute      func(v *int32, a DeviceAttribute, d Device) Result
	cuDeviceTotalMem          func(bytes *uintptr, d Device) Result
	cuDevicePrimaryCtxRetain  func(c *Context, d Device) Result
	cuDevicePrimaryCtxRelease func(d Device) Result
	cuCtxSetCurrent           func(c Context) Result
	cuCtxGetCurrent           func(c *Context) Result
	cuCtxSynchronize          func() Result
	cuMemGetInfo              func(free, total *uintptr) Result
	cuMemAlloc                func(p *DevicePtr, bytes uintptr) Result
	cuMemFree                 func(p DevicePtr) Result
	cuMemHostAlloc            func(p *unsafe.Pointer, bytes uintptr, flags uint32) Result
	cuMemFreeHost             func(p unsafe.Pointer) Result
	cuMemcpyHtoD              func(dst DevicePtr, src unsafe.Pointer, bytes uintptr) Result
	cuMemcpyDtoH              func(dst unsafe.Pointer, src DevicePtr, bytes uintptr) Result
	cuMemcpyDtoD              func(dst, src DevicePtr, bytes uintptr) Result
	cuMemcpyHtoDAsync         func(dst DevicePtr, src unsafe.Pointer, bytes uintptr, s Stream) Result
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src DevicePtr, bytes uintptr, s Stream) Result
	cuMemcpyDtoDAsync         func(dst, src DevicePtr, bytes uintptr, s Stream) Result
	cuMemsetD32Async          func(dst DevicePtr, v uint32, n uintptr, s Stream) Result
	cuStreamCreate            func(s *Stream, flags uint32) Result
	cuStreamDestroy           func(s Stream) Result
	cuStreamSynchronize       func(s Stream) Result
	cuStreamWaitEvent         func(s Stream, e Event, flags uint32) Result
	cuEventCreate             func(e *Event, flags uint32) Result
	cuEventDestroy            func(e Event) Result
	cuEventRecord             func(e Event, s Stream) Result
	cuEventSynchronize        func(e Event) Result
	cuEventElapsedTime        func(ms *float32, start, end Event) Result
	cuModuleLoadDataEx        func(m *Module, image unsafe.Pointer, n uint32, opts *int32, vals *uintptr) Result
	cuModuleUnload            func(m Module) Result
	cuModuleGetFunction       func(f *Function, m Module, name string) Result
	cuFuncSetAttribute        func(f Function, attr int32, v int32) Result
	cuLaunchKernel            func(f Function, gx, gy, gz, bx, by, bz, shared uint32, s Stream, params *unsafe.Pointer, extra unsafe.Pointer) Result
}

// DriverEnv names a libcuda file to load instead of searching.
const DriverEnv = "DENSESSM_CUDA_DRIVER"

// driverCandidates is where LoadDriver looks: DENSESSM_CUDA_DRIVER alone
// when it is set; otherwise the loader's own search for libcuda.so.1, then
// the directories where distributions, WSL and NixOS put the driver. The
// toolkit's stubs/libcuda.so is never a candidate: it loads and then fails
// every call.
func driverCandidates() []string {
	if v := os.Getenv(DriverEnv); v != "" {
		return []string{v}
	}
	c := []string{"libcuda.so.1"}
	return append(c, InDirs([]string{
		"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
		"/usr/local/nvidia/lib64", "/usr/lib/wsl/lib", "/run/opengl-driver/lib",
	}, []string{""}, []string{"libcuda.so.1"})...)
}

// LoadDriver loads libcuda and calls cuInit(0), once per process (the
// result, success or error, is kept). Without a driver it returns a
// *LoadError ("no CUDA driver found (looked for ...)") wrapping
// api.ErrUnsupported; with a driver but no usable device, the *Error of
// cuInit (CUDA_ERROR_NO_DEVICE), also wrapped in api.ErrUnsupported.
func LoadDriver() (*Driver, error) {
	return driverOnce()
}

var driverOnce = sync.OnceValues(func() (*Driver, error) { return loadDriver(driverCandidates()) })

func loadDriver(candidates []string) (*Driver, error) {
	lib, err := OpenFirst("CUDA driver", candidates)
	if err != nil {
		return nil, err
	}
	d := &Driver{Path: lib.Path}
	// The versioned names (_v2) are the ones cuda.h's macros call since
	// CUDA 3.2/4.0; the plain names stay exported for old binaries with
	// the old ABI (32-bit sizes), so they must not be used.
	err = lib.Bind([]Binding{
		{"cuInit", &d.cuInit, false},
		{"cuDriverGetVersion", &d.cuDriverGetVersion, false},
		{"cuGetErrorName", &d.cuGetErrorName, false},
		{"cuGetErrorString", &d.cuGetErrorString, false},
		{"cuDeviceGetCount", &d.cuDeviceGetCount, false},
		{"cuDeviceGet", &d.cuDeviceGet, false},
		{"cuDeviceGetName", &d.cuDeviceGetName, false},
		{"cuDeviceGetAttribute", &d.cuDeviceGetAttribute, false},
		{"cuDeviceTotalMem_v2", &d.cuDeviceTotalMem, false},
		{"cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain, false},
		{"cuDevicePrimaryCtxRelease_v2", &d.cuDevicePrimaryCtxRelease, false},
		{"cuCtxSetCurrent", &d.cuCtxSetCurrent, false},
		{"cuCtxGetCurrent", &d.cuCtxGetCurrent, false},
		{"cuCtxSynchronize", &d.cuCtxSynchronize, false},
		{"cuMemGetInfo_v2", &d.cuMemGetInfo, false},
		{"cuMemAlloc_v2", &d.cuMemAlloc, false},
		{"cuMemFree_v2", &d.cuMemFree, false},
		{"cuMemHostAlloc", &d.cuMemHostAlloc, false},
		{"cuMemFreeHost", &d.cuMemFreeHost, false},
		{"cuMemcpyHtoD_v2", &d.cuMemcpyHtoD, false},
		{"cuMemcpyDtoH_v2", &d.cuMemcpyDtoH, false},
		{"cuMemcpyDtoD_v2", &d.cuMemcpyDtoD, false},
		{"cuMemcpyHtoDAsync_v2", &d.cuMemcpyHtoDAsync, false},
		{"cuMemcpyDtoHAsync_v2", &d.cuMemcpyDtoHAsync, false},
		{"cuMemcpyDtoDAsync_v2", &d.cuMemcpyDtoDAsync, false},
		{"cuMemsetD32Async", &d.cuMemsetD32Async, false},
		{"cuStreamCreate", &d.cuStreamCreate, false},
		{"cuStreamDestroy_v2", &d.cuStreamDestroy, false},
		{"cuStreamSynchronize", &d.cuStreamSynchronize, false},
		{"cuStreamWaitEvent", &d.cuStreamWaitEvent, false},
		{"cuEventCreate", &d.cuEventCreate, false},
		{"cuEventDestroy_v2", &d.cuEventDestroy, false},
		{"cuEventRecord", &d.cuEventRecord, false},
		{"cuEventSynchronize", &d.cuEventSynchronize, false},
		{"cuEventElapsedTime", &d.cuEventElapsedTime, false},
		{"cuModuleLoadDataEx", &d.cuModuleLoadDataEx, false},
		{"cuModuleUnload", &d.cuModuleUnload, false},
		{"cuModuleGetFunction", &d.cuModuleGetFunction, false},
		{"cuFuncSetAttribute", &d.cuFuncSetAttribute, false},
		{"cuLaunchKernel", &d.cuLaunchKernel, false},
	})
	if err != nil {
		return nil, err
	}
	if err := d.check("cuInit", d.cuInit(0)); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", api.ErrUnsupported, d.Path, err)
	}
	var v int32
	if err := d.check("cuDriverGetVersion", d.cuDriverGetVersion(&v)); err != nil {
		return nil, err
	}
	d.Version = int(v)
	return d, nil
}

// check turns a CUresult into nil or an *Error.
func (d *Driver) check(call string, r Result) error {
	if r == Success {
		return nil
	}
	e := &Error{Call: call, Code: r, Name: fmt.Sprintf("CUresult %d", int32(r)), Msg: "unknown error"}
	var p *byte
	if d.cuGetErrorName != nil && d.cuGetErrorName(r, &p) == Success {
		e.Name = cString(p)
	}
	if d.cuGetErrorString != nil && d.cuGetErrorString(r, &p) == Success {
		e.Msg = cString(p)
	}
	return e
}

// DeviceCount returns the number of CUDA devices.
func (d *Driver) DeviceCount() (int, error) {
	var n int32
	err := d.check("cuDeviceGetCount", d.cuDeviceGetCount(&n))
	return int(n), err
}

// DeviceGet returns the handle of device ordinal i.
func (d *Driver) DeviceGet(i int) (Device, error) {
	var dev Device
	err := d.check("cuDeviceGet", d.cuDeviceGet(&dev, int32(i)))
	return dev, err
}

// DeviceName returns the device's marketing name.
func (d *Driver) DeviceName(dev Device) (string, error) {
	var buf [256]byte
	if err := d.check("cuDeviceGetName", d.cuDeviceGetName(&buf[0], int32(len(buf)), dev)); err != nil {
		return "", err
	}
	return cString(&buf[0]), nil
}

// Attribute returns one of the device's attributes.
func (d *Driver) Attribute(dev Device, a DeviceAttribute) (int, error) {
	var v int32
	err := d.check("cuDeviceGetAttribute", d.cuDeviceGetAttribute(&v, a, dev))
	return int(v), err
}

// ComputeCapability returns the device's compute capability as 10*major +
// minor (80 for an A100, 90 for an H100).
func (d *Driver) ComputeCapability(dev Device) (int, error) {
	major, err := d.Attribute(dev, AttrComputeCapabilityMajor)
	if err != nil {
		return 0, err
	}
	minor, err := d.Attribute(dev, AttrComputeCapabilityMinor)
	return 10*major + minor, err
}

// TotalMem returns the device's memory in bytes.
func (d *Driver) TotalMem(dev Device) (uint64, error) {
	var n uintptr
	err := d.check("cuDeviceTotalMem_v2", d.cuDeviceTotalMem(&n, dev))
	return uint64(n), err
}

// PrimaryContext retains the device's primary context (the one the CUDA
// runtime shares) and returns it; ReleasePrimaryContext gives it back.
func (d *Driver) PrimaryContext(dev Device) (Context, error) {
	var c Context
	err := d.check("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(&c, dev))
	return c, err
}

// ReleasePrimaryContext releases what PrimaryContext retained.
func (d *Driver) ReleasePrimaryContext(dev Device) error {
	return d.check("cuDevicePrimaryCtxRelease_v2", d.cuDevicePrimaryCtxRelease(dev))
}

// SetCurrent makes c the calling OS thread's current context.
func (d *Driver) SetCurrent(c Context) error {
	return d.check("cuCtxSetCurrent", d.cuCtxSetCurrent(c))
}

// CurrentContext returns the calling OS thread's current context (0 for none).
func (d *Driver) CurrentContext() (Context, error) {
	var c Context
	err := d.check("cuCtxGetCurrent", d.cuCtxGetCurrent(&c))
	return c, err
}

// Synchronize waits for all work of the current context.
func (d *Driver) Synchronize() error { return d.check("cuCtxSynchronize", d.cuCtxSynchronize()) }

// MemInfo returns the free and total device memory of the current context's device.
func (d *Driver) MemInfo() (free, total uint64, err error) {
	var f, t uintptr
	err = d.check("cuMemGetInfo_v2", d.cuMemGetInfo(&f, &t))
	return uint64(f), uint64(t), err
}

// MemAlloc allocates n bytes of device memory (aligned to at least 256
// bytes). Out of memory is an *Error wrapping api.ErrOutOfMemory.
func (d *Driver) MemAlloc(n uint64) (DevicePtr, error) {
	var p DevicePtr
	err := d.check("cuMemAlloc_v2", d.cuMemAlloc(&p, uintptr(n)))
	return p, err
}

// MemFree frees what MemAlloc returned.
func (d *Driver) MemFree(p DevicePtr) error { return d.check("cuMemFree_v2", d.cuMemFree(p)) }

// HostBuffer is page-locked ("pinned") host memory from MemHostAlloc: the
// only host memory asynchronous copies take, since the copy runs after the
// call returns and pageable (Go) memory could move or be freed by then.
type HostBuffer struct {
	ptr unsafe.Pointer
	n   int
}

// Bytes is the buffer's memory, valid until FreeHost.
func (h HostBuffer) Bytes() []byte {
	if h.ptr == nil {
		return nil
	}
	return unsafe.Slice((*byte)(h.ptr), h.n)
}

// Len is the buffer's size in bytes.
func (h HostBuffer) Len() int { return h.n }

// MemHostAlloc allocates n bytes of page-locked host memory.
func (d *Driver) MemHostAlloc(n int, flags uint32) (HostBuffer, error) {
	var p unsafe.Pointer
	if err := d.check("cuMemHostAlloc", d.cuMemHostAlloc(&p, uintptr(n), flags)); err != nil {
		return HostBuffer{}, err
	}
	return HostBuffer{ptr: p, n: n}, nil
}

// FreeHost frees a HostBuffer.
func (d *Driver) FreeHost(h HostBuffer) error {
	if h.ptr == nil {
		return nil
	}
	return d.check("cuMemFreeHost", d.cuMemFreeHost(h.ptr))
}

// CopyHtoD copies src into device memory at dst and returns when the copy
// is done (src may be any Go memory).
func (d *Driver) CopyHtoD(dst DevicePtr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	err := d.check("cuMemcpyHtoD_v2", d.cuMemcpyHtoD(dst, unsafe.Pointer(&src[0]), uintptr(len(src))))
	runtime.KeepAlive(src)
	return err
}

// CopyDtoH copies len(dst) bytes of device memory at src into dst.
func (d *Driver) CopyDtoH(dst []byte, src DevicePtr) error {
	if len(dst) == 0 {
		return nil
	}
	err := d.check("cuMemcpyDtoH_v2", d.cuMemcpyDtoH(unsafe.Pointer(&dst[0]), src, uintptr(len(dst))))
	runtime.KeepAlive(dst)
	return err
}

// CopyDtoD copies n bytes between device buffers.
func (d *Driver) CopyDtoD(dst, src DevicePtr, n uint64) error {
	return d.check("cuMemcpyDtoD_v2", d.cuMemcpyDtoD(dst, src, uintptr(n)))
}

// errRange is the error of a copy that does not fit its host buffer.
var errRange = fmt.Errorf("%w: copy outside its host buffer", api.ErrOutOfRange)

// CopyHtoDAsync queues a copy of n bytes at offset off of the pinned
// buffer src into dst on stream s.
func (d *Driver) CopyHtoDAsync(dst DevicePtr, src HostBuffer, off, n int, s Stream) error {
	if off < 0 || n < 0 || off+n > src.n {
		return errRange
	}
	return d.check("cuMemcpyHtoDAsync_v2", d.cuMemcpyHtoDAsync(dst, unsafe.Add(src.ptr, off), uintptr(n), s))
}

// CopyDtoHAsync queues a copy of n bytes at src into the pinned buffer
// dst at offset off on stream s.
func (d *Driver) CopyDtoHAsync(dst HostBuffer, off, n int, src DevicePtr, s Stream) error {
	if off < 0 || n < 0 || off+n > dst.n {
		return errRange
	}
	return d.check("cuMemcpyDtoHAsync_v2", d.cuMemcpyDtoHAsync(unsafe.Add(dst.ptr, off), src, uintptr(n), s))
}

// CopyDtoDAsync queues a device-to-device copy of n bytes on stream s.
func (d *Driver) CopyDtoDAsync(dst, src DevicePtr, n uint64, s Stream) error {
	return d.check("cuMemcpyDtoDAsync_v2", d.cuMemcpyDtoDAsync(dst, src, uintptr(n), s))
}

// FillD32Async queues setting n 32-bit words at dst to v on stream s
// (Fill of an F32 tensor: v is the float's bits).
func (d *Driver) FillD32Async(dst DevicePtr, v uint32, n uint64, s Stream) error {
	return d.check("cuMemsetD32Async", d.cuMemsetD32Async(dst, v, uintptr(n), s))
}

// StreamCreate makes a stream (flags: StreamNonBlocking or 0).
func (d *Driver) StreamCreate(flags uint32) (Stream, error) {
	var s Stream
	err := d.check("cuStreamCreate", d.cuStreamCreate(&s, flags))
	return s, err
}

// StreamDestroy destroys a stream once its queued work is done.
func (d *Driver) StreamDestroy(s Stream) error {
	return d.check("cuStreamDestroy_v2", d.cuStreamDestroy(s))
}

// StreamSynchronize waits for the stream's queued work.
func (d *Driver) StreamSynchronize(s Stream) error {
	return d.check("cuStreamSynchronize", d.cuStreamSynchronize(s))
}

// StreamWaitEvent makes s's later work wait for e.
func (d *Driver) StreamWaitEvent(s Stream, e Event) error {
	return d.check("cuStreamWaitEvent", d.cuStreamWaitEvent(s, e, 0))
}

// EventCreate makes an event (flags: EventDefault, EventDisableTiming).
func (d *Driver) EventCreate(flags uint32) (Event, error) {
	var e Event
	err := d.check("cuEventCreate", d.cuEventCreate(&e, flags))
	return e, err
}

// EventDestroy destroys an event.
func (d *Driver) EventDestroy(e Event) error {
	return d.check("cuEventDestroy_v2", d.cuEventDestroy(e))
}

// EventRecord records e on stream s.
func (d *Driver) EventRecord(e Event, s Stream) error {
	return d.check("cuEventRecord", d.cuEventRecord(e, s))
}

// EventSynchronize waits for e.
func (d *Driver) EventSynchronize(e Event) error {
	return d.check("cuEventSynchronize", d.cuEventSynchronize(e))
}

// EventElapsed returns the milliseconds between two recorded events.
func (d *Driver) EventElapsed(start, end Event) (float32, error) {
	var ms float32
	err := d.check("cuEventElapsedTime", d.cuEventElapsedTime(&ms, start, end))
	return ms, err
}

// ModuleLoad loads a module from a CUBIN or PTX image (PTX is compiled by
// the driver's JIT for the current device). A JIT failure's log is in
// the error.
func (d *Driver) ModuleLoad(image []byte) (Module, error) {
	img := make([]byte, len(image)+1) // PTX must end in NUL; a CUBIN ignores it
	copy(img, image)
	logBuf := make([]byte, 16<<10)
	opts := [2]int32{jitErrorLogBuffer, jitErrorLogBufferSize}
	var pin runtime.Pinner
	pin.Pin(&img[0])
	pin.Pin(&logBuf[0])
	defer pin.Unpin()
	// The option values are pointer-sized slots: the buffer's address
	// (pinned above) and its size.
	vals := [2]uintptr{uintptr(unsafe.Pointer(&logBuf[0])), uintptr(len(logBuf))}
	var m Module
	r := d.cuModuleLoadDataEx(&m, unsafe.Pointer(&img[0]), 2, &opts[0], &vals[0])
	if err := d.check("cuModuleLoadDataEx", r); err != nil {
		if log := cString(&logBuf[0]); log != "" {
			return 0, fmt.Errorf("%w\n%s", err, log)
		}
		return 0, err
	}
	return m, nil
}

// ModuleUnload unloads a module.
func (d *Driver) ModuleUnload(m Module) error { return d.check("cuModuleUnload", d.cuModuleUnload(m)) }

// Function looks up a kernel (an extern "C" name) in a module.
func (d *Driver) Function(m Module, name string) (Function, error) {
	var f Function
	err := d.check("cuModuleGetFunction("+name+")", d.cuModuleGetFunction(&f, m, name))
	return f, err
}

// SetMaxDynamicShared lets f use up to n bytes of dynamic shared memory
// (needed above 48 KiB).
func (d *Driver) SetMaxDynamicShared(f Function, n int) error {
	const maxDynamicSharedSizeBytes = 8 // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
	return d.check("cuFuncSetAttribute", d.cuFuncSetAttribute(f, maxDynamicSharedSizeBytes, int32(n)))
}

// Dim3 is a grid or block size.
type Dim3 struct{ X, Y, Z uint32 }

// Bytes is a kernel argument passed by value as raw bytes: a C struct of
// the kernel's signature, laid out by the caller (8-byte fields keep it
// simple).
type Bytes []byte

// maxArgs bounds a launch's argument count.
const maxArgs = 32

type launchArgs struct {
	vals [maxArgs]uint64
	ptrs [maxArgs]unsafe.Pointer
}

var launchPool = sync.Pool{New: func() any { return new(launchArgs) }}

// errArg is a Launch argument of a type Launch does not pass.
var errArg = errors.New("cuda: Launch takes DevicePtr, int32, uint32, int64, uint64, float32, float64 and Bytes arguments")

// Launch queues kernel f on stream s with the given grid, block, dynamic
// shared memory and arguments, which must match the kernel's parameters
// in order and size: DevicePtr for a pointer, int32/uint32 for int,
// int64/uint64 for long long and size_t, float32, float64, and Bytes for a
// struct passed by value.
func (d *Driver) Launch(f Function, grid, block Dim3, shared uint32, s Stream, args ...any) error {
	if len(args) > maxArgs {
		return fmt.Errorf("cuda: Launch: %d arguments, at most %d", len(args), maxArgs)
	}
	la := launchPool.Get().(*launchArgs)
	defer launchPool.Put(la)
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(la)
	for i, a := range args {
		la.ptrs[i] = unsafe.Pointer(&la.vals[i])
		v := &la.vals[i]
		*v = 0
		switch a := a.(type) {
		case DevicePtr:
			*v = uint64(a)
		case int32:
			*(*int32)(unsafe.Pointer(v)) = a
		case uint32:
			*(*uint32)(unsafe.Pointer(v)) = a
		case int64:
			*(*int64)(unsafe.Pointer(v)) = a
		case uint64:
			*v = a
		case float32:
			*(*float32)(unsafe.Pointer(v)) = a
		case float64:
			*(*float64)(unsafe.Pointer(v)) = a
		case Bytes:
			if len(a) == 0 {
				return fmt.Errorf("cuda: Launch: empty Bytes argument %d", i)
			}
			pin.Pin(&a[0])
			la.ptrs[i] = unsafe.Pointer(&a[0])
		default:
			return fmt.Errorf("%w (argument %d is %T)", errArg, i, a)
		}
	}
	var params *unsafe.Pointer
	if len(args) > 0 {
		params = &la.ptrs[0]
	}
	r := d.cuLaunchKernel(f, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, shared, s, params, nil)
	return d.check("cuLaunchKernel", r)
}
