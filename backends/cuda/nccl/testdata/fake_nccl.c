/* A stand-in for libnccl.so.2 with NCCL's C signatures, for the tests of
 * the purego bindings on machines without a GPU: each function records its
 * arguments in st[], which fake_state copies out, so that the test checks
 * what arrived on the C side (the 128-byte id passed by value above all).
 * Built by nccl_test.go with `cc -shared -fPIC`. Not NCCL: it sums nothing. */
#include <string.h>

typedef struct { char internal[128]; } ncclUniqueId;
typedef struct ncclComm *ncclComm_t;

static long long st[64];
static int async_result;

enum { INIT_N, INIT_RANK, INIT_ID_OK, GROUP_START, GROUP_END, N_ALLREDUCE, DESTROYED, ABORTED, AR0 = 8 };

int ncclGetVersion(int *v) { *v = 23206; return 0; }

const char *ncclGetErrorString(int r) {
	switch (r) {
	case 4: return "invalid argument (fake)";
	case 5: return "invalid usage (fake)";
	case 6: return "remote process exited or there was a network error (fake)";
	default: return "fake error";
	}
}

const char *ncclGetLastError(ncclComm_t comm) { return comm ? "last error of a comm (fake)" : "last error (fake)"; }

int ncclGetUniqueId(ncclUniqueId *id) {
	for (int i = 0; i < 128; i++) id->internal[i] = (char)(i * 7 + 3);
	return 0;
}

int ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
	st[INIT_N] = nranks;
	st[INIT_RANK] = rank;
	int ok = 1;
	for (int i = 0; i < 128; i++) ok &= id.internal[i] == (char)(i * 7 + 3);
	st[INIT_ID_OK] = ok;
	if (nranks == 99) return 4;
	*comm = (ncclComm_t)(0x1000 + (long)rank);
	return 0;
}

int ncclCommDestroy(ncclComm_t comm) { st[DESTROYED] = (long long)comm; return 0; }
int ncclCommAbort(ncclComm_t comm) { st[ABORTED] = (long long)comm; return 0; }

int ncclCommGetAsyncError(ncclComm_t comm, int *r) { (void)comm; *r = async_result; return 0; }

int ncclAllReduce(const void *send, void *recv, unsigned long count, int dtype, int op, ncclComm_t comm, void *stream) {
	int i = (int)st[N_ALLREDUCE]++;
	if (i < 7) {
		long long *a = &st[AR0 + 7 * i];
		a[0] = (long long)send; a[1] = (long long)recv; a[2] = (long long)count;
		a[3] = dtype; a[4] = op; a[5] = (long long)comm; a[6] = (long long)stream;
	}
	return count == 777 ? 5 : 0;
}

int ncclGroupStart(void) { st[GROUP_START]++; return 0; }
int ncclGroupEnd(void) { st[GROUP_END]++; return 0; }

void fake_state(long long *out) { memcpy(out, st, sizeof st); }
void fake_reset(int async) { memset(st, 0, sizeof st); async_result = async; }
