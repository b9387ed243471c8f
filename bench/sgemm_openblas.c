/*
 * sgemm_openblas: time OpenBLAS's cblas_sgemm, C = A B with A [M,K] and
 * B [K,N] row-major float32 (with TRANS_B 1, B stored [N,K] and used
 * transposed), the same problem as `densessm bench gemm [--trans-b]`.
 *
 *   gcc -O2 -o sgemm_openblas sgemm_openblas.c -lopenblas
 *   OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Zen ./sgemm_openblas M N K [REPS [TRANS_B]]
 *
 * One untimed warm-up call, then REPS (default 10) timed calls; prints one
 * JSON line with the median seconds, GFLOP/s (2MNK/time) and the core type
 * OpenBLAS selected (openblas_get_corename), which is the kernel it runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

/* OpenBLAS extensions. Declared here too because the cblas.h that the
 * alternatives system links may belong to another BLAS. */
char *openblas_get_corename(void);
char *openblas_get_config(void);
int openblas_get_num_threads(void);

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* fill sets n values uniform in [-1, 1) from a 64-bit LCG. */
static void fill(float *x, size_t n, unsigned long long seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		x[i] = (float)((double)(seed >> 40) / (double)(1ULL << 24)) * 2.0f - 1.0f;
	}
}

/* arg parses argv[i] as a positive integer or exits. */
static long arg(char **argv, int i)
{
	char *end;
	long v = strtol(argv[i], &end, 10);
	if (*end != '\0' || v < 1) {
		fprintf(stderr, "sgemm_openblas: argument %d (%s) must be a positive integer\n", i, argv[i]);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 6) {
		fprintf(stderr, "usage: %s M N K [REPS [TRANS_B]]\n", argv[0]);
		return 2;
	}
	long m = arg(argv, 1), n = arg(argv, 2), k = arg(argv, 3);
	long reps = argc >= 5 ? arg(argv, 4) : 10;
	/* TRANS_B 1: B is stored [N,K] and used transposed, as a model's weights are. */
	int transb = argc == 6 && strcmp(argv[5], "1") == 0;
	enum CBLAS_TRANSPOSE tb = transb ? CblasTrans : CblasNoTrans;
	long ldb = transb ? k : n;
	float *a = malloc(sizeof(float) * (size_t)(m * k));
	float *b = malloc(sizeof(float) * (size_t)(k * n));
	float *c = malloc(sizeof(float) * (size_t)(m * n));
	double *times = malloc(sizeof(double) * (size_t)reps);
	if (!a || !b || !c || !times) {
		fprintf(stderr, "sgemm_openblas: out of memory\n");
		return 1;
	}
	fill(a, (size_t)(m * k), 1);
	fill(b, (size_t)(k * n), 2);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, m, n, k, 1.0f, a, k, b, ldb, 0.0f, c, n);
	for (long r = 0; r < reps; r++) {
		double t0 = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, m, n, k, 1.0f, a, k, b, ldb, 0.0f, c, n);
		times[r] = now() - t0;
	}
	qsort(times, (size_t)reps, sizeof(double), cmp_double);
	double med = reps % 2 ? times[reps / 2] : (times[reps / 2 - 1] + times[reps / 2]) / 2;
	printf("{\"m\":%ld,\"n\":%ld,\"k\":%ld,\"trans_b\":%s,\"threads\":%d,\"reps\":%ld,\"seconds_median\":%.9g,"
	       "\"gflops\":%.6g,\"kernel\":\"%s\",\"config\":\"%s\"}\n",
	       m, n, k, transb ? "true" : "false", openblas_get_num_threads(), reps, med, 2.0 * m * n * k / med / 1e9,
	       openblas_get_corename(), openblas_get_config());
	free(a);
	free(b);
	free(c);
	free(times);
	return 0;
}
