package driver

import (
	"fmt"
	"sync"
)

// CUBLAS is cuBLAS (libcublas, with the libcublasLt it links), the calls
// the backend's GEMM needs, resolved once when loaded.
type CUBLAS struct {
	Path   string // libcublas that was loaded
	LtPath string // libcublasLt that was loaded

	cublasCreate              func(h *uintptr) int32
	cublasDestroy             func(h uintptr) int32
	cublasGetVersion          func(h uintptr, v *int32) int32
	cublasSetStream           func(h uintptr, s Stream) int32
	cublasSetMathMode         func(h uintptr, mode int32) int32
	cublasGetStatusString     func(s int32) string // optional (cuBLAS 11.4+)
	cublasSgemm               func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a DevicePtr, lda int32, b DevicePtr, ldb int32, beta *float32, c DevicePtr, ldc int32) int32
	cublasSgemmStridedBatched func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a DevicePtr, lda int32, sa int64, b DevicePtr, ldb int32, sb int64, beta *float32, c DevicePtr, ldc int32, sc int64, batch int32) int32
	// cublasGemmEx and cublasGemmStridedBatchedEx: alpha and beta are
	// const void*, pointers to float for CUBLAS_COMPUTE_32F (the only
	// compute type the backend asks for).
	cublasGemmEx               func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a DevicePtr, atype int32, lda int32, b DevicePtr, btype int32, ldb int32, beta *float32, c DevicePtr, ctype int32, ldc int32, compute int32, algo int32) int32
	cublasGemmStridedBatchedEx func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a DevicePtr, atype int32, lda int32, sa int64, b DevicePtr, btype int32, ldb int32, sb int64, beta *float32, c DevicePtr, ctype int32, ldc int32, sc int64, batch int32, compute int32, algo int32) int32
	cublasLtGetVersion         func() uintptr
	cublasLtCreate             func(h *uintptr) int32
}

// Op is a cublasOperation_t.
type Op int32

// The operations of a GEMM operand.
const (
	OpN Op = 0 // as stored
	OpT Op = 1 // transposed
)

// MathMode is a cublasMath_t.
type MathMode int32

// The math modes: DefaultMath keeps float32 GEMMs in float32 arithmetic
// (what the CPU backend computes); TF32Math lets tensor cores round the
// operands to TF32.
const (
	DefaultMath MathMode = 0
	TF32Math    MathMode = 3
)

// DataType is a cudaDataType_t (library_types.h), the element type of a
// cublasGemmEx operand.
type DataType int32

// The element types the backend's GEMMs use.
const (
	R32F  DataType = 0  // CUDA_R_32F: float
	R16BF DataType = 14 // CUDA_R_16BF: __nv_bfloat16
)

// ComputeType is a cublasComputeType_t.
type ComputeType int32

// Compute32F is CUBLAS_COMPUTE_32F: products and sums in float32 (for
// BF16 operands, exact products accumulated in float32), alpha and beta
// given as float.
const Compute32F ComputeType = 68

// gemmDefault is CUBLAS_GEMM_DEFAULT, cuBLAS's choice of algorithm.
const gemmDefault int32 = -1

// CUBLASEnv names a directory holding libcublas and libcublasLt (or the
// libcublas file itself), to look at before the usual places.
const CUBLASEnv = "DENSESSM_CUBLAS"

var (
	cublasNames   = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so"}
	cublasLtNames = []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}
	// nvidia-cublas 13.x: nvidia/cu13/lib; nvidia-cublas-cu12: nvidia/cublas/lib.
	cublasSubdirs = []string{"lib", "lib64", "nvidia/cu13/lib", "nvidia/cublas/lib"}
)

func cublasCandidates(names []string) []string {
	c := EnvCandidates(CUBLASEnv, names, cublasSubdirs)
	c = append(c, names...)
	c = append(c, InDirs(ToolkitDirs(), []string{""}, names)...)
	return append(c, InDirs(SitePackages(), cublasSubdirs[2:], names)...)
}

// LoadCUBLAS loads libcublasLt and libcublas, once per process. It needs
// no GPU to load; its handles (Create) need a current context.
func LoadCUBLAS() (*CUBLAS, error) {
	return cublasOnce()
}

var cublasOnce = sync.OnceValues(func() (*CUBLAS, error) {
	return loadCUBLAS(cublasCandidates(cublasLtNames), cublasCandidates(cublasNames))
})

func loadCUBLAS(ltCandidates, candidates []string) (*CUBLAS, error) {
	lt, err := OpenFirst("cuBLASLt", ltCandidates)
	if err != nil {
		return nil, err
	}
	lib, err := OpenFirst("cuBLAS", candidates)
	if err != nil {
		return nil, err
	}
	b := &CUBLAS{Path: lib.Path, LtPath: lt.Path}
	if err := lt.Bind([]Binding{
		{"cublasLtGetVersion", &b.cublasLtGetVersion, false},
		{"cublasLtCreate", &b.cublasLtCreate, false},
	}); err != nil {
		return nil, err
	}
	err = lib.Bind([]Binding{
		{"cublasCreate_v2", &b.cublasCreate, false},
		{"cublasDestroy_v2", &b.cublasDestroy, false},
		{"cublasGetVersion_v2", &b.cublasGetVersion, false},
		{"cublasSetStream_v2", &b.cublasSetStream, false},
		{"cublasSetMathMode", &b.cublasSetMathMode, false},
		{"cublasGetStatusString", &b.cublasGetStatusString, true},
		{"cublasSgemm_v2", &b.cublasSgemm, false},
		{"cublasSgemmStridedBatched", &b.cublasSgemmStridedBatched, false},
		{"cublasGemmEx", &b.cublasGemmEx, false},
		{"cublasGemmStridedBatchedEx", &b.cublasGemmStridedBatchedEx, false},
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// CUBLASError is a failed cuBLAS call.
type CUBLASError struct {
	Call   string
	Status int32
	Msg    string
}

func (e *CUBLASError) Error() string {
	return fmt.Sprintf("cublas: %s: status %d: %s", e.Call, e.Status, e.Msg)
}

func (b *CUBLAS) check(call string, s int32) error {
	if s == 0 {
		return nil
	}
	e := &CUBLASError{Call: call, Status: s, Msg: "unknown status"}
	if b.cublasGetStatusString != nil {
		e.Msg = b.cublasGetStatusString(s)
	}
	return e
}

// LtVersion is cublasLtGetVersion (e.g. 130100).
func (b *CUBLAS) LtVersion() int { return int(b.cublasLtGetVersion()) }

// Handle is a cuBLAS handle, bound to the context current when it was made.
type Handle uintptr

// Create makes a handle in the current context, with DefaultMath.
func (b *CUBLAS) Create() (Handle, error) {
	var h uintptr
	if err := b.check("cublasCreate_v2", b.cublasCreate(&h)); err != nil {
		return 0, err
	}
	return Handle(h), b.check("cublasSetMathMode", b.cublasSetMathMode(h, int32(DefaultMath)))
}

// Destroy frees a handle.
func (b *CUBLAS) Destroy(h Handle) error {
	return b.check("cublasDestroy_v2", b.cublasDestroy(uintptr(h)))
}

// Version is cublasGetVersion (e.g. 130100 for 13.1.0).
func (b *CUBLAS) Version(h Handle) (int, error) {
	var v int32
	err := b.check("cublasGetVersion_v2", b.cublasGetVersion(uintptr(h), &v))
	return int(v), err
}

// SetStream queues the handle's later calls on s.
func (b *CUBLAS) SetStream(h Handle, s Stream) error {
	return b.check("cublasSetStream_v2", b.cublasSetStream(uintptr(h), s))
}

// SetMathMode sets the handle's math mode.
func (b *CUBLAS) SetMathMode(h Handle, m MathMode) error {
	return b.check("cublasSetMathMode", b.cublasSetMathMode(uintptr(h), int32(m)))
}

// Sgemm is cublasSgemm in cuBLAS's column-major convention:
// C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C, alpha and beta read from
// host memory during the call.
func (b *CUBLAS) Sgemm(h Handle, ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, bm DevicePtr, ldb int, beta float32, c DevicePtr, ldc int) error {
	return b.check("cublasSgemm_v2", b.cublasSgemm(uintptr(h), int32(ta), int32(tb), int32(m), int32(n), int32(k),
		&alpha, a, int32(lda), bm, int32(ldb), &beta, c, int32(ldc)))
}

// SgemmStridedBatched is cublasSgemmStridedBatched: batch Sgemms whose
// operands lie strideA, strideB, strideC elements apart (a stride of 0
// reuses one operand for every batch).
func (b *CUBLAS) SgemmStridedBatched(h Handle, ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, strideA int64,
	bm DevicePtr, ldb int, strideB int64, beta float32, c DevicePtr, ldc int, strideC int64, batch int) error {
	return b.check("cublasSgemmStridedBatched", b.cublasSgemmStridedBatched(uintptr(h), int32(ta), int32(tb),
		int32(m), int32(n), int32(k), &alpha, a, int32(lda), strideA, bm, int32(ldb), strideB, &beta, c, int32(ldc), strideC, int32(batch)))
}

// GemmEx is cublasGemmEx with C in float32 and CUBLAS_COMPUTE_32F: C[m,n]
// = alpha op(A)[m,k] op(B)[k,n] + beta C, A and B of type ab (R16BF: BF16
// operands, their products accumulated in float32), cuBLAS's default
// algorithm; alpha and beta are read from host memory during the call.
func (b *CUBLAS) GemmEx(h Handle, ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, bm DevicePtr, ldb int, ab DataType,
	beta float32, c DevicePtr, ldc int) error {
	return b.check("cublasGemmEx", b.cublasGemmEx(uintptr(h), int32(ta), int32(tb), int32(m), int32(n), int32(k),
		&alpha, a, int32(ab), int32(lda), bm, int32(ab), int32(ldb), &beta, c, int32(R32F), int32(ldc), int32(Compute32F), gemmDefault))
}

// GemmStridedBatchedEx is cublasGemmStridedBatchedEx with GemmEx's types:
// batch products whose operands lie strideA, strideB, strideC elements
// apart (0 reuses one operand for every batch).
func (b *CUBLAS) GemmStridedBatchedEx(h Handle, ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, strideA int64,
	bm DevicePtr, ldb int, strideB int64, ab DataType, beta float32, c DevicePtr, ldc int, strideC int64, batch int) error {
	return b.check("cublasGemmStridedBatchedEx", b.cublasGemmStridedBatchedEx(uintptr(h), int32(ta), int32(tb),
		int32(m), int32(n), int32(k), &alpha, a, int32(ab), int32(lda), strideA, bm, int32(ab), int32(ldb), strideB,
		&beta, c, int32(R32F), int32(ldc), strideC, int32(batch), int32(Compute32F), gemmDefault))
}

// RowMajorGemm is the column-major call that computes the row-major
// product of api.Kernels.MatMul, dst[M,N] = alpha op(a) op(b) + beta dst
// with a [M,K] ([K,M] when transA) and b [K,N] ([N,K] when transB), all
// contiguous: a row-major matrix is its transpose in column-major, so
// dst^T = op(b)^T op(a)^T is computed with the operands swapped.
type RowMajorGemm struct {
	TA, TB        Op  // the operations of the first and second column-major operand
	M, N, K       int // column-major sizes: M = the row-major N, N = the row-major M
	LDA, LDB, LDC int
	SwapOperands  bool // always true: the first operand is b, the second a
}

// RowMajor returns the column-major Sgemm arguments of a row-major MatMul.
func RowMajor(M, N, K int, transA, transB bool) RowMajorGemm {
	g := RowMajorGemm{M: N, N: M, K: K, LDC: N, SwapOperands: true}
	// First operand: b, row-major [K,N] (or [N,K] when transB), read
	// column-major as [N,K] (or [K,N]).
	if transB {
		g.TA, g.LDA = OpT, K
	} else {
		g.TA, g.LDA = OpN, N
	}
	if transA {
		g.TB, g.LDB = OpT, M
	} else {
		g.TB, g.LDB = OpN, K
	}
	return g
}
