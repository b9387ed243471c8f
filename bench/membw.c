/*
 * membw: a memory-bandwidth probe. It reads a buffer (default 1 GiB, far
 * larger than any cache) with T threads, each summing its own contiguous
 * share, several times, and prints one JSON line with the best and the
 * median read bandwidth in GB/s (1e9 bytes per second).
 *
 *   gcc -O3 -march=native -pthread -o membw membw.c
 *   ./membw THREADS [MIB] [PASSES]
 *
 * A decode step reads every weight once, so weight_bytes / bandwidth is a
 * lower bound on its time: tokens/s <= bandwidth / weight_bytes.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct share {
	const uint64_t *p;
	size_t n;
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

/* reader sums its share with four independent accumulators, which the
 * compiler turns into vector loads. */
static void *reader(void *arg)
{
	struct share *s = arg;
	uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
	size_t i = 0;
	for (; i + 4 <= s->n; i += 4) {
		a0 += s->p[i];
		a1 += s->p[i + 1];
		a2 += s->p[i + 2];
		a3 += s->p[i + 3];
	}
	for (; i < s->n; i++)
		a0 += s->p[i];
	s->sum = a0 + a1 + a2 + a3;
	return NULL;
}

/* arg parses argv[i] as a positive integer or exits. */
static long arg(char **argv, int i)
{
	char *end;
	long v = strtol(argv[i], &end, 10);
	if (*end != '\0' || v < 1) {
		fprintf(stderr, "membw: argument %d (%s) must be a positive integer\n", i, argv[i]);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: %s THREADS [MIB] [PASSES]\n", argv[0]);
		return 2;
	}
	long threads = arg(argv, 1);
	long mib = argc > 2 ? arg(argv, 2) : 1024;
	long passes = argc > 3 ? arg(argv, 3) : 5;
	size_t bytes = (size_t)mib << 20, n = bytes / sizeof(uint64_t);
	uint64_t *buf = malloc(bytes);
	struct share *shares = calloc((size_t)threads, sizeof *shares);
	pthread_t *tids = calloc((size_t)threads, sizeof *tids);
	double *gbs = calloc((size_t)passes, sizeof *gbs);
	if (!buf || !shares || !tids || !gbs) {
		fprintf(stderr, "membw: out of memory\n");
		return 1;
	}
	memset(buf, 1, bytes); /* touch every page before timing */
	uint64_t check = 0;
	for (long p = 0; p < passes; p++) {
		double t0 = now();
		for (long t = 0; t < threads; t++) {
			size_t lo = n * (size_t)t / (size_t)threads, hi = n * (size_t)(t + 1) / (size_t)threads;
			shares[t] = (struct share){.p = buf + lo, .n = hi - lo};
			if (pthread_create(&tids[t], NULL, reader, &shares[t]) != 0) {
				fprintf(stderr, "membw: pthread_create failed\n");
				return 1;
			}
		}
		for (long t = 0; t < threads; t++) {
			pthread_join(tids[t], NULL);
			check += shares[t].sum;
		}
		gbs[p] = (double)bytes / (now() - t0) / 1e9;
	}
	qsort(gbs, (size_t)passes, sizeof(double), cmp_double);
	double med = passes % 2 ? gbs[passes / 2] : (gbs[passes / 2 - 1] + gbs[passes / 2]) / 2;
	printf("{\"threads\":%ld,\"bytes\":%zu,\"passes\":%ld,\"gbytes_per_s_best\":%.4g,"
	       "\"gbytes_per_s_median\":%.4g,\"checksum\":%llu}\n",
	       threads, bytes, passes, gbs[passes - 1], med, (unsigned long long)check);
	free(buf);
	free(shares);
	free(tids);
	free(gbs);
	return 0;
}
