package driver

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// stubCUBLAS is a stand-in for libcublas and libcublasLt with the symbols
// loadCUBLAS binds, cuBLAS's C signatures, each call recording its
// arguments (pointers to float by their bits) for rec to read back.
const stubCUBLAS = `
typedef long long ll;
static ll r[32];
ll rec(int i) { return r[i]; }
static ll bits(const void *f) { return *(const unsigned int *)f; }
int cublasLtGetVersion(void) { return 130100; }
int cublasLtCreate(void **h) { *h = 0; return 0; }
int cublasCreate_v2(void **h) { *h = (void *)0x1234; return 0; }
int cublasDestroy_v2(void *h) { return 0; }
int cublasGetVersion_v2(void *h, int *v) { *v = 130100; return 0; }
int cublasSetStream_v2(void *h, void *s) { return 0; }
int cublasSetMathMode(void *h, int mode) { r[0] = (ll)h; r[1] = mode; return 0; }
int cublasSgemm_v2(void) { return 0; }
int cublasSgemmStridedBatched(void) { return 0; }
int cublasGemmEx(void *h, int ta, int tb, int m, int n, int k, const void *alpha, const void *a, int at, int lda,
	const void *b, int bt, int ldb, const void *beta, void *c, int ct, int ldc, int compute, int algo) {
	ll v[] = {(ll)h, ta, tb, m, n, k, bits(alpha), (ll)a, at, lda, (ll)b, bt, ldb, bits(beta), (ll)c, ct, ldc, compute, algo};
	for (int i = 0; i < 19; i++) r[i] = v[i];
	return 0;
}
int cublasGemmStridedBatchedEx(void *h, int ta, int tb, int m, int n, int k, const void *alpha, const void *a, int at, int lda, ll sa,
	const void *b, int bt, int ldb, ll sb, const void *beta, void *c, int ct, int ldc, ll sc, int batch, int compute, int algo) {
	ll v[] = {(ll)h, ta, tb, m, n, k, bits(alpha), (ll)a, at, lda, sa, (ll)b, bt, ldb, sb, bits(beta), (ll)c, ct, ldc, sc, batch, compute, algo};
	for (int i = 0; i < 23; i++) r[i] = v[i];
	return 3; /* CUBLAS_STATUS_ALLOC_FAILED, to see the error path */
}
`

// TestCUBLASStub loads a stub library compiled with the C compiler (the
// test skips without one) as cuBLAS and checks what SetMathMode, GemmEx
// and GemmStridedBatchedEx pass through purego: every argument in cuBLAS's
// order and C type, alpha and beta as pointers to float, C in CUDA_R_32F,
// CUBLAS_COMPUTE_32F (68), CUBLAS_GEMM_DEFAULT (-1); and a failing status
// as a *CUBLASError naming the call. It checks the bindings, not cuBLAS.
func TestCUBLASStub(t *testing.T) {
	if !DynamicLoading {
		t.Skip("no dynamic loading here")
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("no C compiler: %v", err)
	}
	dir := t.TempDir()
	src, lib := filepath.Join(dir, "stub.c"), filepath.Join(dir, "libcublas-stub.so")
	if err := os.WriteFile(src, []byte(stubCUBLAS), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cc, err, out)
	}
	b, err := loadCUBLAS([]string{lib}, []string{lib})
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenFirst("stub", []string{lib})
	if err != nil {
		t.Fatal(err)
	}
	var rec func(i int32) int64
	if err := l.Bind([]Binding{{"rec", &rec, false}}); err != nil {
		t.Fatal(err)
	}
	expect := func(call string, want []int64) {
		t.Helper()
		for i, w := range want {
			if got := rec(int32(i)); got != w {
				t.Errorf("%s: argument %d is %d, want %d", call, i, got, w)
			}
		}
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetMathMode(h, TF32Math); err != nil {
		t.Fatal(err)
	}
	expect("cublasSetMathMode", []int64{0x1234, 3})
	f := func(v float32) int64 { return int64(math.Float32bits(v)) }
	if err := b.GemmEx(h, OpT, OpN, 3, 4, 5, 1.5, 0x1000, 6, 0x2000, 7, R16BF, -0.25, 0x3000, 8); err != nil {
		t.Fatal(err)
	}
	expect("cublasGemmEx", []int64{0x1234, 1, 0, 3, 4, 5, f(1.5), 0x1000, 14, 6, 0x2000, 14, 7, f(-0.25), 0x3000, 0, 8, 68, -1})
	err = b.GemmStridedBatchedEx(h, OpN, OpT, 3, 4, 5, 2, 0x1000, 6, 1<<40, 0x2000, 7, 0, R16BF, 0.5, 0x3000, 8, 1<<33+5, 9)
	if e, ok := err.(*CUBLASError); !ok || e.Call != "cublasGemmStridedBatchedEx" || e.Status != 3 {
		t.Errorf("status 3 gave %v", err)
	}
	expect("cublasGemmStridedBatchedEx", []int64{0x1234, 0, 1, 3, 4, 5, f(2), 0x1000, 14, 6, 1 << 40, 0x2000, 14, 7, 0, f(0.5),
		0x3000, 0, 8, 1<<33 + 5, 9, 68, -1})
}
