/*
 * membw: a memory read-bandwidth probe. T threads read a buffer (default
 * 1 GiB, far larger than any cache), each its own contiguous share, and each
 * thread reads its share as S interleaved sequential streams, the way a
 * matrix-vector product reads S rows of a weight matrix at once: the share
 * is walked in blocks of S rows of ROW bytes (default 64 KiB), and each step
 * of the loop reads the next 64-byte line of each of the block's S rows. One
 * stream understates what a core can read: with several streams the core
 * keeps more lines in flight and the prefetchers run ahead on each of them
 * (on a 2-core Zen 3 slice: 23.7 GB/s from one stream, 30.5 from 8, one
 * thread). The rows of a block lie close together, as a matrix's rows do:
 * streams hundreds of megabytes apart read slower than one stream here (19 to
 * 22 GB/s), each step opening another DRAM page. The buffer is asked for in
 * transparent huge pages (madvise) so that TLB misses do not count.
 *
 *   gcc -O3 -march=native -pthread -o membw membw.c
 *   ./membw THREADS [MIB] [PASSES] [STREAMS] [ROW_KIB]
 *
 * STREAMS is a comma-separated list of streams per thread (default 1,4,8; at
 * most 64 each). Every pass times each stream count in turn, so that a slow
 * moment of a shared machine does not fall on one count only. It prints one
 * JSON line: per stream count the best and the median bandwidth over the
 * passes in GB/s (1e9 bytes per second), and gbytes_per_s_best, the best of
 * them all (with best_streams, the count that gave it), which is the figure to
 * divide weight bytes by: a decode step reads every weight once, so
 * tokens/s <= bandwidth / weight_bytes. The loads are 32-byte AVX2 loads when
 * compiled with AVX2 (-march=native on an AVX2 CPU), 8-byte loads otherwise
 * ("simd" in the output says which). A pass is timed from the first thread's
 * start to the last one's end; the calling thread is one of the readers.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#ifdef __AVX2__
#include <immintrin.h>
#define SIMD "avx2"
#else
#define SIMD "scalar"
#endif

#define LINE 64
#define MAX_STREAMS 64
#define MAX_COUNTS 16

struct share {
	const unsigned char *p; /* the thread's share, LINE-aligned */
	size_t lines;           /* its length in lines */
	int streams;
	pthread_barrier_t *start;
	size_t row_lines;       /* the length of a stream's row in lines */
	double t0, t1;          /* when it began and ended reading */
	uint64_t sum;
};

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

/* read_lines reads lines [0, n) of each of the S rows p[s], line by line
 * across the rows, and returns a sum of what it read. Inlined with a
 * constant S it becomes S independent load chains per step. */
static inline __attribute__((always_inline)) uint64_t read_lines(const unsigned char *const *p, size_t n, int S)
{
#ifdef __AVX2__
	__m256i acc[MAX_STREAMS];
	for (int s = 0; s < S; s++)
		acc[s] = _mm256_setzero_si256();
	for (size_t i = 0; i < n; i++) {
		size_t off = i * LINE;
		for (int s = 0; s < S; s++) {
			__m256i a = _mm256_load_si256((const __m256i *)(p[s] + off));
			__m256i b = _mm256_load_si256((const __m256i *)(p[s] + off + 32));
			acc[s] = _mm256_add_epi64(acc[s], _mm256_add_epi64(a, b));
		}
	}
	uint64_t sum = 0;
	for (int s = 0; s < S; s++) {
		uint64_t v[4];
		_mm256_storeu_si256((__m256i *)v, acc[s]);
		sum += v[0] + v[1] + v[2] + v[3];
	}
	return sum;
#else
	uint64_t acc[MAX_STREAMS] = {0};
	for (size_t i = 0; i < n; i++) {
		size_t off = i * LINE;
		for (int s = 0; s < S; s++) {
			const uint64_t *q = (const uint64_t *)(p[s] + off);
			acc[s] += q[0] + q[1] + q[2] + q[3] + q[4] + q[5] + q[6] + q[7];
		}
	}
	uint64_t sum = 0;
	for (int s = 0; s < S; s++)
		sum += acc[s];
	return sum;
#endif
}

static void *reader(void *arg)
{
	struct share *sh = arg;
	int S = sh->streams;
	size_t rl = sh->row_lines, block = (size_t)S * rl, blocks = sh->lines / block;
	pthread_barrier_wait(sh->start);
	sh->t0 = now();
	uint64_t sum = 0;
	const unsigned char *p[MAX_STREAMS];
	for (size_t b = 0; b < blocks; b++) {
		for (int s = 0; s < S; s++)
			p[s] = sh->p + (b * block + (size_t)s * rl) * LINE;
		switch (S) { /* constant stream counts unroll; others take the generic loop */
		case 1: sum += read_lines(p, rl, 1); break;
		case 2: sum += read_lines(p, rl, 2); break;
		case 4: sum += read_lines(p, rl, 4); break;
		case 8: sum += read_lines(p, rl, 8); break;
		case 16: sum += read_lines(p, rl, 16); break;
		default: sum += read_lines(p, rl, S); break;
		}
	}
	const unsigned char *tail = sh->p + blocks * block * LINE; /* the lines after the last block */
	sum += read_lines(&tail, sh->lines - blocks * block, 1);
	sh->sum = sum;
	sh->t1 = now();
	return NULL;
}

/* arg parses s as an integer in [1, max] or exits. */
static long arg(const char *what, const char *s, long max)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || v < 1 || v > max) {
		fprintf(stderr, "membw: %s (%s) must be an integer from 1 to %ld\n", what, s, max);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 6) {
		fprintf(stderr, "usage: %s THREADS [MIB] [PASSES] [STREAMS,...] [ROW_KIB]\n", argv[0]);
		return 2;
	}
	long threads = arg("THREADS", argv[1], 1024);
	long mib = argc > 2 ? arg("MIB", argv[2], 1L << 20) : 1024;
	long passes = argc > 3 ? arg("PASSES", argv[3], 1000) : 5;
	int counts[MAX_COUNTS], ncounts = 0;
	char list[256];
	snprintf(list, sizeof list, "%s", argc > 4 ? argv[4] : "1,4,8");
	for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (ncounts == MAX_COUNTS) {
			fprintf(stderr, "membw: at most %d stream counts\n", MAX_COUNTS);
			return 2;
		}
		counts[ncounts++] = (int)arg("STREAMS", tok, MAX_STREAMS);
	}
	if (ncounts == 0) {
		fprintf(stderr, "membw: STREAMS is empty\n");
		return 2;
	}

	size_t row_lines = (size_t)(argc > 5 ? arg("ROW_KIB", argv[5], 1L << 20) : 64) * 1024 / LINE;
	size_t bytes = (size_t)mib << 20, align = (size_t)2 << 20;
	size_t lines = bytes / LINE;
	unsigned char *buf = aligned_alloc(align, (bytes + align - 1) / align * align);
	struct share *shares = calloc((size_t)threads, sizeof *shares);
	pthread_t *tids = calloc((size_t)threads, sizeof *tids);
	double *gbs = calloc((size_t)(passes * ncounts), sizeof *gbs);
	if (!buf || !shares || !tids || !gbs) {
		fprintf(stderr, "membw: out of memory\n");
		return 1;
	}
#ifdef MADV_HUGEPAGE
	madvise(buf, (bytes + align - 1) / align * align, MADV_HUGEPAGE);
#endif
	memset(buf, 1, bytes); /* touch every page before timing */
	/* The calling thread reads share 0 itself: a main thread waiting beside
	 * THREADS readers would be one runnable thread more than cores. */
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, (unsigned)threads);

	uint64_t check = 0;
	for (long p = 0; p < passes; p++) {
		for (int c = 0; c < ncounts; c++) {
			for (long t = 0; t < threads; t++) {
				size_t lo = lines * (size_t)t / (size_t)threads, hi = lines * (size_t)(t + 1) / (size_t)threads;
				shares[t] = (struct share){.p = buf + lo * LINE, .lines = hi - lo, .streams = counts[c],
							   .row_lines = row_lines, .start = &start};
				if (t > 0 && pthread_create(&tids[t], NULL, reader, &shares[t]) != 0) {
					fprintf(stderr, "membw: pthread_create failed\n");
					return 1;
				}
			}
			reader(&shares[0]);
			double t0 = shares[0].t0, t1 = shares[0].t1;
			for (long t = 0; t < threads; t++) {
				if (t > 0)
					pthread_join(tids[t], NULL);
				check += shares[t].sum;
				t0 = shares[t].t0 < t0 ? shares[t].t0 : t0;
				t1 = shares[t].t1 > t1 ? shares[t].t1 : t1;
			}
			/* from the first thread's start to the last one's end */
			gbs[c * passes + p] = (double)(lines * LINE) / (t1 - t0) / 1e9;
		}
	}

	double best = 0, best_median = 0;
	int best_streams = counts[0];
	printf("{\"threads\":%ld,\"bytes\":%zu,\"passes\":%ld,\"simd\":\"%s\",\"row_bytes\":%zu,\"streams\":[", threads,
	       lines * LINE, passes, SIMD, row_lines * LINE);
	for (int c = 0; c < ncounts; c++) {
		double *g = gbs + c * passes;
		qsort(g, (size_t)passes, sizeof(double), cmp_double);
		double med = passes % 2 ? g[passes / 2] : (g[passes / 2 - 1] + g[passes / 2]) / 2;
		printf("%s{\"streams\":%d,\"gbytes_per_s_best\":%.4g,\"gbytes_per_s_median\":%.4g}", c ? "," : "",
		       counts[c], g[passes - 1], med);
		if (g[passes - 1] > best) {
			best = g[passes - 1];
			best_median = med;
			best_streams = counts[c];
		}
	}
	printf("],\"best_streams\":%d,\"gbytes_per_s_best\":%.4g,\"gbytes_per_s_median\":%.4g,\"checksum\":%llu}\n",
	       best_streams, best, best_median, (unsigned long long)check);
	pthread_barrier_destroy(&start);
	free(buf);
	free(shares);
	free(tids);
	free(gbs);
	return 0;
}
