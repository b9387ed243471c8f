package cuda

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// device is what the backend needs of a GPU: memory, pinned staging
// buffers, copies, fills, kernel launches and cuBLAS GEMMs, all queued in
// order on one stream. Two implementations: realDevice (the driver, the
// NVRTC-compiled kernels of backends/cuda/kernels and cuBLAS) and
// fakeDevice (host memory, each kernel modelled in Go), which the tests
// use to check everything above it without a GPU.
type device interface {
	// describe names the device for errors and logs.
	describe() string
	// memInfo returns the free and total device memory in bytes.
	memInfo() (free, total int64, err error)
	// alloc allocates n bytes of device memory (aligned to 256 bytes);
	// out of memory wraps api.ErrOutOfMemory.
	alloc(n int64) (driver.DevicePtr, error)
	free(p driver.DevicePtr) error
	// hostAlloc allocates a page-locked staging buffer of n bytes.
	hostAlloc(n int) (staging, error)
	hostFree(s staging) error
	// copyHtoD queues a copy of n bytes at off in src to dst; copyDtoH
	// the other way. The staging buffer must not be touched until sync.
	copyHtoD(dst driver.DevicePtr, src staging, off, n int) error
	copyDtoH(dst staging, off, n int, src driver.DevicePtr) error
	copyDtoD(dst, src driver.DevicePtr, n int64) error
	// fill32 queues setting n 32-bit words at dst to v.
	fill32(dst driver.DevicePtr, v uint32, n int64) error
	// launch queues one of the kernels of backends/cuda/kernels by name,
	// its arguments as driver.Launch takes them, in the order and with the
	// types of the kernel's CUDA C signature (checked: signatureOf).
	launch(kernel string, g kernels.Geometry, args ...any) error
	// gemm queues a cuBLAS GEMM (column-major, strided batched) with C in
	// float32.
	gemm(g gemmCall) error
	// sync waits for everything queued.
	sync() error
	close() error
}

// tensorSizer is a device told the exact size of each new tensor in its
// block, which is at least that large (the tests' emulated device, which
// moves the tensor's end to a guard page to catch a kernel that runs
// past it). Backend.Alloc tells it before zero-filling the tensor.
type tensorSizer interface {
	tensorAt(p driver.DevicePtr, n int64)
}

// staging is a pinned host buffer: bytes is its memory; pinned the
// driver's handle (zero on the fake device).
type staging struct {
	bytes  []byte
	pinned driver.HostBuffer
}

// gemmCall is one cuBLAS GEMM in its column-major convention: for i <
// batch, C_i[m,n] = alpha op(A_i) op(B_i) + beta C_i, where X_i starts
// strideX elements after X_{i-1} (0 shares X); with beta = 0, C is not
// read. C is float32; A and B are of type ab: driver.R32F (the zero value)
// is cublasSgemm (cublasSgemmStridedBatched when batch > 1), driver.R16BF
// cublasGemmEx (cublasGemmStridedBatchedEx) with BF16 A and B and
// CUBLAS_COMPUTE_32F. math is the handle's math mode for the call (the
// device calls cublasSetMathMode when it differs from the last call's);
// driver.TF32Math makes tensor cores round the R32F operands to TF32.
type gemmCall struct {
	ta, tb                    driver.Op
	m, n, k                   int
	alpha, beta               float32
	a, b, c                   driver.DevicePtr
	lda, ldb, ldc             int
	strideA, strideB, strideC int64
	batch                     int
	ab                        driver.DataType
	math                      driver.MathMode
}

// argKind is the type of a kernel parameter as driver.Launch passes it.
type argKind uint8

const (
	argPtr    argKind = iota + 1 // any pointer: driver.DevicePtr
	argI32                       // int: int32
	argI64                       // long long: int64
	argU64                       // unsigned long long: uint64
	argF32                       // float: float32
	argF64                       // double: float64
	argStruct                    // a struct by value: driver.Bytes
)

func (k argKind) String() string {
	return [...]string{"?", "pointer", "int", "long long", "unsigned long long", "float", "double", "struct"}[k]
}

var (
	sigRE = regexp.MustCompile(`extern\s+"C"\s+__global__\s+(?:__launch_bounds__\([^)]*\)\s+)?void\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(([^)]*)\)`)
	sigs  struct {
		once   sync.Once
		byName map[string][]argKind
		source map[string]string // kernel -> the .cu file defining it
	}
)

// parseSignatures reads every kernel's parameter types from the embedded
// CUDA C sources: the launches are checked against the source itself.
func parseSignatures() {
	sigs.byName = map[string][]argKind{}
	sigs.source = map[string]string{}
	for _, src := range kernels.Sources() {
		for _, m := range sigRE.FindAllStringSubmatch(src.Code, -1) {
			var kinds []argKind
			for _, p := range strings.Split(m[2], ",") {
				p = strings.TrimSpace(p)
				if p == "" {
					continue
				}
				kinds = append(kinds, paramKind(p))
			}
			sigs.byName[m[1]] = kinds
			sigs.source[m[1]] = src.Name
		}
	}
}

// paramKind classifies one C parameter declaration ("const float* x").
func paramKind(p string) argKind {
	if strings.Contains(p, "*") {
		return argPtr
	}
	f := strings.Fields(strings.ReplaceAll(p, "const ", ""))
	typ := strings.Join(f[:len(f)-1], " ")
	switch typ {
	case "int":
		return argI32
	case "long long":
		return argI64
	case "unsigned long long":
		return argU64
	case "float":
		return argF32
	case "double":
		return argF64
	}
	return argStruct
}

// signatureOf returns a kernel's parameter kinds and its source file.
func signatureOf(kernel string) ([]argKind, string, bool) {
	sigs.once.Do(parseSignatures)
	k, ok := sigs.byName[kernel]
	return k, sigs.source[kernel], ok
}

// checkLaunch checks a launch's arguments against the kernel's CUDA C
// signature: their number and, for each, the Go type driver.Launch
// passes for that C type.
func checkLaunch(kernel string, args []any) error {
	kinds, _, ok := signatureOf(kernel)
	if !ok {
		return fmt.Errorf("cuda: no kernel %q in backends/cuda/kernels", kernel)
	}
	if len(args) != len(kinds) {
		return fmt.Errorf("cuda: %s takes %d arguments, launched with %d", kernel, len(kinds), len(args))
	}
	for i, a := range args {
		var got argKind
		switch a.(type) {
		case driver.DevicePtr:
			got = argPtr
		case int32:
			got = argI32
		case int64:
			got = argI64
		case uint64:
			got = argU64
		case float32:
			got = argF32
		case float64:
			got = argF64
		case driver.Bytes:
			got = argStruct
		}
		if got != kinds[i] {
			return fmt.Errorf("cuda: %s argument %d is a %s, passed a %T", kernel, i, kinds[i], a)
		}
	}
	return nil
}
