// cublas.c: a stub libcublas.so.13 (and, built with -DSTUB_LT,
// libcublasLt.so.13) for the tests (stub_device_test.go): the calls
// backends/cuda/driver binds, with cublas_api.h's signatures, working on
// the stub libcuda's memory and streams (stubcuda.h).
//
// A handle needs a current context when it is made and used; its stream
// must be one of that context's. The GEMMs check their arguments as cuBLAS
// does (CUBLAS_STATUS_INVALID_VALUE for a bad operation, a negative size,
// a leading dimension under max(1, rows) of its operand, a negative batch;
// CUBLAS_STATUS_NOT_SUPPORTED for types other than float or BF16 operands
// into float with CUBLAS_COMPUTE_32F), read alpha and beta at the call
// (CUBLAS_POINTER_MODE_HOST), check that every operand's elements lie in
// one device allocation (which cuBLAS does not: on a GPU, a read past an
// allocation is garbage or a fault; here CUBLAS_STATUS_EXECUTION_FAILED,
// named on stderr), and queue the product on the handle's stream. It is
// computed by the column-major definition, as the fake device's model:
// products and sums in double, rounded to float once; BF16 operands decoded
// exactly; float operands rounded to TF32 (to nearest, ties away) under
// CUBLAS_TF32_TENSOR_OP_MATH; with beta = 0, C is not read.
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stubcuda.h"

enum {
	CUBLAS_STATUS_SUCCESS = 0,
	CUBLAS_STATUS_NOT_INITIALIZED = 1,
	CUBLAS_STATUS_ALLOC_FAILED = 3,
	CUBLAS_STATUS_INVALID_VALUE = 7,
	CUBLAS_STATUS_EXECUTION_FAILED = 13,
	CUBLAS_STATUS_NOT_SUPPORTED = 15,
};

#define VERSION 130100 // cuBLAS 13.1.0

#ifdef STUB_LT

size_t cublasLtGetVersion(void) { return VERSION; }

int cublasLtCreate(void** h) {
	static int lt;
	*h = &lt;
	return CUBLAS_STATUS_SUCCESS;
}

#else

typedef struct handle {
	int alive;
	CUstream stream;
	int math;
} * cublasHandle_t;

enum { CUDA_R_32F = 0, CUDA_R_16BF = 14, CUBLAS_COMPUTE_32F = 68 };

static void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char* fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "stub libcublas: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

const char* cublasGetStatusString(int s) {
	switch (s) {
	case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
	case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
	case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
	case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
	case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
	case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
	}
	return "<unrecognized cuBLAS status>";
}

// usable checks a handle and the calling thread's context.
static int usable(cublasHandle_t h, const char* call) {
	if (!h || !h->alive) {
		say("%s: a handle that is not one (or was destroyed)", call);
		return CUBLAS_STATUS_NOT_INITIALIZED;
	}
	if (!stubcuda_has_context()) {
		say("%s: no usable current context on the calling thread", call);
		return CUBLAS_STATUS_EXECUTION_FAILED;
	}
	return CUBLAS_STATUS_SUCCESS;
}

int cublasCreate_v2(cublasHandle_t* h) {
	if (!h) return CUBLAS_STATUS_INVALID_VALUE;
	if (!stubcuda_has_context()) {
		say("cublasCreate_v2: no usable current context on the calling thread");
		return CUBLAS_STATUS_NOT_INITIALIZED;
	}
	*h = calloc(1, sizeof **h);
	(*h)->alive = 1;
	return CUBLAS_STATUS_SUCCESS;
}

int cublasDestroy_v2(cublasHandle_t h) {
	int s = usable(h, "cublasDestroy_v2");
	if (s) return s;
	h->alive = 0; // kept: a later use is caught
	return CUBLAS_STATUS_SUCCESS;
}

int cublasGetVersion_v2(cublasHandle_t h, int* v) {
	int s = usable(h, "cublasGetVersion_v2");
	if (s) return s;
	*v = VERSION;
	return CUBLAS_STATUS_SUCCESS;
}

int cublasSetStream_v2(cublasHandle_t h, CUstream stream) {
	int s = usable(h, "cublasSetStream_v2");
	if (s) return s;
	if (stubcuda_stream_ok(stream) != 0) {
		say("cublasSetStream_v2: %p is not a stream of the current context", (void*)stream);
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	h->stream = stream;
	return CUBLAS_STATUS_SUCCESS;
}

int cublasSetMathMode(cublasHandle_t h, int mode) {
	int s = usable(h, "cublasSetMathMode");
	if (s) return s;
	int base = mode & ~16; // CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION
	if (base != 0 && base != 1 && base != 2 && base != 3) return CUBLAS_STATUS_INVALID_VALUE;
	h->math = mode;
	return CUBLAS_STATUS_SUCCESS;
}

// A queued GEMM, in cuBLAS's column-major convention.
struct gemm {
	const char* call;
	int ta, tb, m, n, k, lda, ldb, ldc, batch, ab, tf32;
	long long sa, sb, sc;
	double alpha, beta;
	CUdeviceptr a, b, c;
};

static float roundTF32(float v) {
	uint32_t bits;
	memcpy(&bits, &v, 4);
	if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & ~0x1fffu;
	memcpy(&v, &bits, 4);
	return v;
}

// element reads element i of an operand.
static double element(const struct gemm* g, CUdeviceptr p, long long i) {
	if (g->ab == CUDA_R_16BF) {
		uint32_t bits = (uint32_t)((const uint16_t*)p)[i] << 16;
		float v;
		memcpy(&v, &bits, 4);
		return v;
	}
	float v = ((const float*)p)[i];
	return g->tf32 ? roundTF32(v) : v;
}

// span is the number of elements an operand's batch reaches: the last
// batch's start, then ld for each column but the last and rows of it.
static long long span(int rows, int cols, int ld, long long stride, int batch) {
	if (rows == 0 || cols == 0) return 0;
	return (stride > 0 ? stride : 0) * (batch - 1) + (long long)ld * (cols - 1) + rows;
}

// inRange checks that an operand's elements lie in one device allocation.
static int inRange(const struct gemm* g, const char* which, CUdeviceptr p, long long elems, int size) {
	if (elems == 0) return 1;
	const char* msg = stubcuda_device_range(p, (size_t)elems * (size_t)size);
	if (!msg) return 1;
	say("%s: %s (%lld elements): %s", g->call, which, elems, msg);
	return 0;
}

static int checkRanges(const struct gemm* g) {
	int rowsA = g->ta ? g->k : g->m, colsA = g->ta ? g->m : g->k;
	int rowsB = g->tb ? g->n : g->k, colsB = g->tb ? g->k : g->n;
	int size = g->ab == CUDA_R_16BF ? 2 : 4;
	return inRange(g, "A", g->a, g->k ? span(rowsA, colsA, g->lda, g->sa, g->batch) : 0, size) &&
	       inRange(g, "B", g->b, g->k ? span(rowsB, colsB, g->ldb, g->sb, g->batch) : 0, size) &&
	       inRange(g, "C", g->c, span(g->m, g->n, g->ldc, g->sc, g->batch), 4);
}

static CUresult runGemm(void* arg) {
	struct gemm* g = arg;
	if (!checkRanges(g)) { // freed between the call and the stream's turn
		say("%s, queued, ran after an operand was freed", g->call);
		return STUB_CUDA_ERROR_ILLEGAL_ADDRESS;
	}
	for (int bi = 0; bi < g->batch; bi++) {
		CUdeviceptr a = g->a + (CUdeviceptr)(bi * g->sa * (g->ab == CUDA_R_16BF ? 2 : 4));
		CUdeviceptr b = g->b + (CUdeviceptr)(bi * g->sb * (g->ab == CUDA_R_16BF ? 2 : 4));
		float* c = (float*)(g->c + (CUdeviceptr)(bi * g->sc * 4));
		for (int j = 0; j < g->n; j++)
			for (int i = 0; i < g->m; i++) {
				double s = 0;
				for (int p = 0; p < g->k; p++) {
					double av = element(g, a, g->ta ? p + (long long)i * g->lda : i + (long long)p * g->lda);
					double bv = element(g, b, g->tb ? j + (long long)p * g->ldb : p + (long long)j * g->ldb);
					s += av * bv;
				}
				double v = g->alpha * s;
				if (g->beta != 0) v += g->beta * c[i + (long long)j * g->ldc];
				c[i + (long long)j * g->ldc] = (float)v;
			}
	}
	return STUB_CUDA_SUCCESS;
}

// gemm checks a GEMM's arguments as cuBLAS does and queues it.
static int gemm(cublasHandle_t h, struct gemm g) {
	int s = usable(h, g.call);
	if (s) return s;
	if ((g.ta != 0 && g.ta != 1 && g.ta != 2) || (g.tb != 0 && g.tb != 1 && g.tb != 2)) return CUBLAS_STATUS_INVALID_VALUE;
	g.ta = g.ta != 0;
	g.tb = g.tb != 0; // CUBLAS_OP_C is CUBLAS_OP_T for real types
	int rowsA = g.ta ? g.k : g.m, rowsB = g.tb ? g.n : g.k;
	if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0 || g.lda < (rowsA > 1 ? rowsA : 1) || g.ldb < (rowsB > 1 ? rowsB : 1) ||
	    g.ldc < (g.m > 1 ? g.m : 1)) {
		say("%s: CUBLAS_STATUS_INVALID_VALUE (m %d n %d k %d lda %d ldb %d ldc %d batch %d)", g.call, g.m, g.n, g.k, g.lda, g.ldb, g.ldc,
		    g.batch);
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	if (g.m == 0 || g.n == 0 || g.batch == 0) return CUBLAS_STATUS_SUCCESS;
	g.tf32 = g.ab == CUDA_R_32F && (h->math & ~16) == 3;
	if (!checkRanges(&g)) return CUBLAS_STATUS_EXECUTION_FAILED;
	struct gemm* q = malloc(sizeof *q);
	*q = g;
	if (stubcuda_enqueue(h->stream, runGemm, free, q) != 0) {
		say("%s: the stream refused the work", g.call);
		return CUBLAS_STATUS_EXECUTION_FAILED;
	}
	return CUBLAS_STATUS_SUCCESS;
}

int cublasSgemm_v2(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda, const float* b,
                   int ldb, const float* beta, float* c, int ldc) {
	if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
	return gemm(h, (struct gemm){"cublasSgemm_v2", ta, tb, m, n, k, lda, ldb, ldc, 1, CUDA_R_32F, 0, 0, 0, 0, *alpha, *beta,
	                             (CUdeviceptr)a, (CUdeviceptr)b, (CUdeviceptr)c});
}

int cublasSgemmStridedBatched(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                              long long sa, const float* b, int ldb, long long sb, const float* beta, float* c, int ldc, long long sc,
                              int batch) {
	if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
	return gemm(h, (struct gemm){"cublasSgemmStridedBatched", ta, tb, m, n, k, lda, ldb, ldc, batch, CUDA_R_32F, 0, sa, sb, sc, *alpha,
	                             *beta, (CUdeviceptr)a, (CUdeviceptr)b, (CUdeviceptr)c});
}

// exTypes checks cublasGemmEx's types: float or BF16 A and B (the same),
// float C, CUBLAS_COMPUTE_32F (the only compute type the stub models),
// and an algorithm cuBLAS knows.
static int exTypes(const char* call, int at, int bt, int ct, int compute, int algo) {
	int ok = at == bt && (at == CUDA_R_32F || at == CUDA_R_16BF) && ct == CUDA_R_32F && compute == CUBLAS_COMPUTE_32F;
	if (!ok) {
		say("%s: types A %d, B %d, C %d, compute %d: CUBLAS_STATUS_NOT_SUPPORTED", call, at, bt, ct, compute);
		return CUBLAS_STATUS_NOT_SUPPORTED;
	}
	if (!(algo >= -1 && algo <= 23) && !(algo >= 99 && algo <= 115)) return CUBLAS_STATUS_INVALID_VALUE;
	return CUBLAS_STATUS_SUCCESS;
}

int cublasGemmEx(cublasHandle_t h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int at, int lda, const void* b,
                 int bt, int ldb, const void* beta, void* c, int ct, int ldc, int compute, int algo) {
	int s = exTypes("cublasGemmEx", at, bt, ct, compute, algo);
	if (s) return s;
	if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
	return gemm(h, (struct gemm){"cublasGemmEx", ta, tb, m, n, k, lda, ldb, ldc, 1, at, 0, 0, 0, 0, *(const float*)alpha,
	                             *(const float*)beta, (CUdeviceptr)a, (CUdeviceptr)b, (CUdeviceptr)c});
}

int cublasGemmStridedBatchedEx(cublasHandle_t h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int at, int lda,
                               long long sa, const void* b, int bt, int ldb, long long sb, const void* beta, void* c, int ct, int ldc,
                               long long sc, int batch, int compute, int algo) {
	int s = exTypes("cublasGemmStridedBatchedEx", at, bt, ct, compute, algo);
	if (s) return s;
	if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
	return gemm(h, (struct gemm){"cublasGemmStridedBatchedEx", ta, tb, m, n, k, lda, ldb, ldc, batch, at, 0, sa, sb, sc,
	                             *(const float*)alpha, *(const float*)beta, (CUdeviceptr)a, (CUdeviceptr)b, (CUdeviceptr)c});
}

#endif
