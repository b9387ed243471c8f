// cuda.c: a stub libcuda.so.1 for the tests (stub_device_test.go): the
// driver API calls backends/cuda/driver binds, with cuda.h's signatures
// and versioned names, behaving as a GPU would towards its caller, on the
// CPU:
//
//   - one device, "densessm stub GPU (CPU)", compute capability 9.0 (an
//     H100's attributes), 2 GiB, driver version 13.0 (so PTX ISA 9.0 at
//     most, as the GPU image's driver 580);
//   - nothing but cuInit, cuDriverGetVersion and the error strings works
//     before cuInit; every call on memory, streams, modules and launches
//     needs a live current context on the calling thread
//     (CUDA_ERROR_INVALID_CONTEXT without one), the primary context
//     retained, made current and released as the driver does (released for
//     the last time, it is destroyed with its memory, and its handle then
//     gives CUDA_ERROR_CONTEXT_IS_DESTROYED);
//   - device memory is host memory at the same address, each allocation
//     its own mapping, filled with 0xff bytes (NaN as float and double),
//     ending (rounded up to 256 bytes) at a guard page with one before it;
//     freed memory stays mapped without access for a while, so that a use
//     after free faults;
//   - the work of a stream is queued, as on a GPU, and runs when the stream
//     (or the context, or an event of it) is synchronized: copies, fills,
//     kernels and the stub cuBLAS's GEMMs. A queued copy or GEMM whose
//     memory was freed before it ran, or a kernel that faults (the
//     emulator's guard pages) fails with CUDA_ERROR_ILLEGAL_ADDRESS, any
//     other kernel failure (a deadlock at a barrier) with
//     CUDA_ERROR_LAUNCH_FAILED, reported on stderr; the error is sticky, as
//     on a GPU: every later call of the context returns it. Copies to or
//     from pageable (not cuMemHostAlloc) memory run at the call, after the
//     stream's queued work, as the driver stages them;
//   - modules: a CUBIN (an ELF for sm_90 only: CUDA_ERROR_NO_BINARY_FOR_GPU
//     otherwise) or PTX text (ISA 9.0 and .target sm_90 at most, else
//     CUDA_ERROR_UNSUPPORTED_PTX_VERSION or CUDA_ERROR_INVALID_PTX with the
//     JIT's log in CU_JIT_ERROR_LOG_BUFFER); cuModuleGetFunction finds a
//     kernel only when the image defines it (a .entry of the PTX, a FUNC
//     symbol of the CUBIN) and the emulator has it; from a CUBIN the stub
//     reads each kernel's registers (EIATTR_REGCOUNT), static shared
//     memory (.nv.shared.<kernel>) and launch bounds, and cuLaunchKernel
//     refuses what an H100 refuses: a block of more than 1024 threads or
//     more than the launch bounds, more than 64 Ki registers a block
//     (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES), more shared memory than 48 KiB
//     or than cuFuncSetAttribute allowed (CUDA_ERROR_INVALID_VALUE);
//   - kernels run in the CUDA emulator of the tests (kernels/emu), the
//     library DENSESSM_CUDA_STUB_EMU names, loaded at cuInit: the kernel's
//     parameters are copied at the launch (their sizes from the emulator's
//     table, as a driver reads them from the module) and handed to
//     ds_emu_launch as cuLaunchKernel's argument pointers.
//
// Events record the time their turn in the stream came. Not modelled:
// concurrency between streams (a stream runs only when synchronized), the
// JIT's register allocation (PTX kernels are not checked for registers),
// peer access, graphs, and the GPU's timing and arithmetic.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "stubcuda.h"

typedef int CUdevice;
typedef struct stub_ctx* CUcontext;
typedef struct stub_module* CUmodule;
typedef struct stub_func* CUfunction;
typedef struct stub_event* CUevent;

enum {
	CUDA_SUCCESS = 0,
	CUDA_ERROR_INVALID_VALUE = 1,
	CUDA_ERROR_OUT_OF_MEMORY = 2,
	CUDA_ERROR_NOT_INITIALIZED = 3,
	CUDA_ERROR_NO_DEVICE = 100,
	CUDA_ERROR_INVALID_DEVICE = 101,
	CUDA_ERROR_INVALID_IMAGE = 200,
	CUDA_ERROR_INVALID_CONTEXT = 201,
	CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
	CUDA_ERROR_INVALID_PTX = 218,
	CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
	CUDA_ERROR_INVALID_HANDLE = 400,
	CUDA_ERROR_NOT_FOUND = 500,
	CUDA_ERROR_NOT_READY = 600,
	CUDA_ERROR_ILLEGAL_ADDRESS = 700,
	CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
	CUDA_ERROR_CONTEXT_IS_DESTROYED = 709,
	CUDA_ERROR_LAUNCH_FAILED = 719,
	CUDA_ERROR_UNKNOWN = 999,
};

static const struct {
	int code;
	const char *name, *text;
} errors[] = {
	{CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
	{CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	{CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	{CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	{CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	{CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	{CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	{CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
	{CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
	{CUDA_ERROR_UNSUPPORTED_PTX_VERSION, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	 "the provided PTX was compiled with an unsupported toolchain."},
	{CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	{CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	{CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
	{CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
	{CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
	{CUDA_ERROR_CONTEXT_IS_DESTROYED, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
	{CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
	{CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

// The device.
#define DEVICE_NAME "densessm stub GPU (CPU)"
#define DRIVER_VERSION 13000   // CUDA 13.0, driver 580
#define PTX_ISA_MAX 90         // PTX ISA 9.0: what driver 580's JIT reads
#define DEVICE_ARCH 90         // compute capability 9.0
#define TOTAL_MEM (2ull << 30) // bytes
#define SHARED_DEFAULT (48 << 10)
#define SHARED_OPTIN 232448 // cudaDevAttrMaxSharedMemoryPerBlockOptin of an H100
#define REGS_PER_BLOCK 65536
#define QUARANTINE (256ull << 20) // freed bytes kept mapped without access
#define POISON 0xff

static pthread_mutex_t mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static int initialized;
static size_t page;

static void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char* fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "stub libcuda: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

// ---- contexts

struct stub_ctx {
	int alive;
	CUresult sticky; // the error of queued work that failed: every later call returns it
};

static CUcontext primary; // the live primary context, or 0
static int primaryRefs;
static __thread CUcontext current;

// needCtx is the check of every call that acts on the current context.
static CUresult needCtx(void) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (!current) return CUDA_ERROR_INVALID_CONTEXT;
	if (!current->alive) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
	return current->sticky;
}

#define LOCKED_CTX()                       \
	pthread_mutex_lock(&mu);               \
	CUresult r_ = needCtx();               \
	if (r_ != CUDA_SUCCESS) {              \
		pthread_mutex_unlock(&mu);         \
		return r_;                         \
	}
#define RETURN(r)                  \
	do {                           \
		CUresult rr_ = (r);        \
		pthread_mutex_unlock(&mu); \
		return rr_;                \
	} while (0)

// ---- memory

enum { DEVICE_MEM = 1, PINNED_MEM = 2 };

struct alloc {
	uintptr_t base;
	size_t size; // as asked for
	char* map;   // the mapping, guard pages included
	size_t mapLen;
	int kind;
	int freed; // in quarantine: no access
};

static struct alloc* allocs;
static size_t nallocs, capAllocs;
static size_t used, quarantined;

// findAlloc returns the live allocation of kind holding the n bytes at p.
static struct alloc* findAlloc(uintptr_t p, size_t n, int kind) {
	for (size_t i = 0; i < nallocs; i++) {
		struct alloc* a = &allocs[i];
		if (!a->freed && a->kind == kind && p >= a->base && p - a->base <= a->size && n <= a->size - (p - a->base)) return a;
	}
	return 0;
}

// describeAddr says what the n bytes at p are, for messages.
static const char* describeAddr(uintptr_t p, size_t n) {
	static char buf[256];
	for (size_t i = 0; i < nallocs; i++) {
		struct alloc* a = &allocs[i];
		if (p + n <= (uintptr_t)a->map || p >= (uintptr_t)a->map + a->mapLen) continue;
		const char* what = a->kind == DEVICE_MEM ? "device allocation" : "pinned host buffer";
		if (a->freed)
			snprintf(buf, sizeof buf, "%zu bytes at %#lx: in the freed %zu-byte %s at %#lx", n, (unsigned long)p, a->size, what,
			         (unsigned long)a->base);
		else
			snprintf(buf, sizeof buf, "%zu bytes at %#lx: not within the %zu-byte %s at %#lx", n, (unsigned long)p, a->size, what,
			         (unsigned long)a->base);
		return buf;
	}
	snprintf(buf, sizeof buf, "%zu bytes at %#lx: not in any allocation", n, (unsigned long)p);
	return buf;
}

// newAlloc maps n bytes ending (rounded up to 256) at a guard page, with
// one before them, filled with POISON.
static struct alloc* newAlloc(size_t n, int kind) {
	size_t rounded = (n + 255) & ~(size_t)255;
	size_t data = (rounded + page - 1) / page * page;
	char* m = mmap(0, data + 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) return 0;
	mprotect(m, page, PROT_NONE);
	mprotect(m + page + data, page, PROT_NONE);
	memset(m + page, POISON, data);
	if (nallocs == capAllocs) {
		capAllocs = capAllocs ? 2 * capAllocs : 256;
		allocs = realloc(allocs, capAllocs * sizeof *allocs);
	}
	struct alloc* a = &allocs[nallocs++];
	*a = (struct alloc){(uintptr_t)(m + page + data - rounded), n, m, data + 2 * page, kind, 0};
	return a;
}

// freeAlloc puts an allocation in quarantine (no access), unmapping the
// oldest ones past QUARANTINE bytes.
static void freeAlloc(struct alloc* a) {
	mprotect(a->map, a->mapLen, PROT_NONE);
	a->freed = 1;
	quarantined += a->mapLen;
	size_t j = 0;
	for (size_t i = 0; i < nallocs; i++) {
		if (allocs[i].freed && quarantined > QUARANTINE) {
			munmap(allocs[i].map, allocs[i].mapLen);
			quarantined -= allocs[i].mapLen;
			continue;
		}
		allocs[j++] = allocs[i];
	}
	nallocs = j;
}

// ---- streams and their queued work

struct op {
	struct op* next;
	CUresult (*fn)(void*);
	void (*release)(void*);
	void* arg;
};

struct stub_stream {
	int alive;
	unsigned flags;
	CUcontext ctx;
	struct op *head, *tail;
	struct stub_stream* nextStream;
};

static struct stub_stream legacy = {1, 0, 0, 0, 0, 0}; // stream 0
static struct stub_stream* streams;                  // every stream made, live or not

static struct stub_stream* streamOf(CUstream s) { return s ? s : &legacy; }

static CUresult checkStream(CUstream s) {
	if (!s) return CUDA_SUCCESS;
	for (struct stub_stream* t = streams; t; t = t->nextStream)
		if (t == s) return t->alive && t->ctx == current ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
	return CUDA_ERROR_INVALID_HANDLE;
}

// flush runs a stream's queued work, in order; a failure becomes the
// context's sticky error and the rest is dropped.
static CUresult flush(struct stub_stream* s) {
	while (s->head) {
		struct op* o = s->head;
		s->head = o->next;
		if (!s->head) s->tail = 0;
		if (current && current->sticky == CUDA_SUCCESS) {
			CUresult r = o->fn(o->arg);
			if (r != CUDA_SUCCESS && current) current->sticky = r;
		}
		if (o->release) o->release(o->arg);
		free(o);
	}
	return current ? current->sticky : CUDA_SUCCESS;
}

static CUresult flushAll(void) {
	flush(&legacy);
	for (struct stub_stream* t = streams; t; t = t->nextStream)
		if (t->alive && t->ctx == current) flush(t);
	return current ? current->sticky : CUDA_SUCCESS;
}

static void enqueue(struct stub_stream* s, CUresult (*fn)(void*), void (*release)(void*), void* arg) {
	struct op* o = calloc(1, sizeof *o);
	o->fn = fn;
	o->release = release;
	o->arg = arg;
	if (s->tail) s->tail->next = o;
	else s->head = o;
	s->tail = o;
}

// ---- the emulator

static int (*emuLaunch)(const char* kernel, const unsigned* grid, const unsigned* block, unsigned shared, void** args,
                        const uint64_t* sizes, int nargs, char* msg, int msglen, uint64_t* fault);
static int (*emuParams)(const char* kernel, uint64_t* sizes, int max);
static const char* emuPath;

static int loadEmulator(void) {
	emuPath = getenv("DENSESSM_CUDA_STUB_EMU");
	if (!emuPath || !*emuPath) {
		say("DENSESSM_CUDA_STUB_EMU names no emulator library: no device");
		return 0;
	}
	void* h = dlopen(emuPath, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		say("loading the emulator: %s", dlerror());
		return 0;
	}
	emuLaunch = dlsym(h, "ds_emu_launch");
	emuParams = dlsym(h, "ds_emu_kernel_params");
	if (!emuLaunch || !emuParams) {
		say("%s lacks ds_emu_launch or ds_emu_kernel_params", emuPath);
		return 0;
	}
	return 1;
}

// ---- initialization, devices, errors

CUresult cuInit(unsigned flags) {
	if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&mu);
	if (!initialized) {
		page = (size_t)sysconf(_SC_PAGESIZE);
		if (!loadEmulator()) RETURN(CUDA_ERROR_NO_DEVICE);
		initialized = 1;
	}
	RETURN(CUDA_SUCCESS);
}

CUresult cuDriverGetVersion(int* v) {
	if (!v) return CUDA_ERROR_INVALID_VALUE;
	*v = DRIVER_VERSION;
	return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult r, const char** s) {
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == r) {
			*s = errors[i].name;
			return CUDA_SUCCESS;
		}
	*s = 0;
	return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult r, const char** s) {
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == r) {
			*s = errors[i].text;
			return CUDA_SUCCESS;
		}
	*s = 0;
	return CUDA_ERROR_INVALID_VALUE;
}

// cuGetExportTable is the driver's private interface, which libnvrtc 13
// looks up when it compiles: it dlopens libcuda.so.1 (this stub, already
// loaded under that name) and calls cuInit and cuGetExportTable, and
// crashes where the symbol is missing. The stub has no table to give.
CUresult cuGetExportTable(const void** table, const void* id) {
	(void)id;
	if (table) *table = 0;
	return CUDA_ERROR_NOT_FOUND;
}

CUresult cuDeviceGetCount(int* n) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	*n = 1;
	return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice* d, int ordinal) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
	*d = 0;
	return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
	if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
	snprintf(name, (size_t)len, "%s", DEVICE_NAME);
	return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice d) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
	static const int h100[][2] = {
		{1, 1024},        {2, 1024},     {3, 64},         {4, 2147483647}, {5, 65535},    {6, 65535},
		{8, 49152},       {9, 65536},    {10, 32},        {12, 65536},     {13, 1980000}, {16, 132},
		{36, 2619000},    {37, 5120},    {38, 52428800},  {39, 2048},      {75, 9},       {76, 0},
		{81, 233472},     {82, 65536},   {97, SHARED_OPTIN},
	};
	for (size_t i = 0; i < sizeof h100 / sizeof h100[0]; i++)
		if (h100[i][0] == attr) {
			*v = h100[i][1];
			return CUDA_SUCCESS;
		}
	say("cuDeviceGetAttribute(%d): an attribute the stub does not model", attr);
	return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuDeviceTotalMem_v2(size_t* n, CUdevice d) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
	*n = TOTAL_MEM;
	return CUDA_SUCCESS;
}

// ---- contexts

CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice d) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
	pthread_mutex_lock(&mu);
	if (!primary) {
		primary = calloc(1, sizeof *primary); // a new handle: the old one stays destroyed
		primary->alive = 1;
	}
	primaryRefs++;
	*c = primary;
	RETURN(CUDA_SUCCESS);
}

// destroyContext frees the context's memory, streams and work, as the
// driver does when the primary context's last reference goes.
static void destroyContext(CUcontext c) {
	for (struct stub_stream* t = streams; t; t = t->nextStream)
		if (t->ctx == c) {
			while (t->head) {
				struct op* o = t->head;
				t->head = o->next;
				if (o->release) o->release(o->arg);
				free(o);
			}
			t->tail = 0;
			t->alive = 0;
		}
	while (legacy.head) {
		struct op* o = legacy.head;
		legacy.head = o->next;
		if (o->release) o->release(o->arg);
		free(o);
	}
	legacy.tail = 0;
	for (size_t i = 0; i < nallocs; i++)
		if (!allocs[i].freed) {
			if (allocs[i].kind == DEVICE_MEM) used -= allocs[i].size;
			freeAlloc(&allocs[i]);
			i = (size_t)-1; // freeAlloc compacts the table: start again
		}
	c->alive = 0;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
	pthread_mutex_lock(&mu);
	if (!primary || primaryRefs == 0) RETURN(CUDA_ERROR_INVALID_CONTEXT);
	if (--primaryRefs == 0) {
		destroyContext(primary);
		primary = 0;
	}
	RETURN(CUDA_SUCCESS);
}

CUresult cuCtxSetCurrent(CUcontext c) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	if (c && !c->alive) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
	current = c;
	return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext* c) {
	if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
	*c = current;
	return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void) {
	LOCKED_CTX();
	RETURN(flushAll());
}

// ---- memory

CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
	LOCKED_CTX();
	*free = TOTAL_MEM - used;
	*total = TOTAL_MEM;
	RETURN(CUDA_SUCCESS);
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) {
	LOCKED_CTX();
	if (!p || n == 0) RETURN(CUDA_ERROR_INVALID_VALUE);
	if (n > TOTAL_MEM - used) RETURN(CUDA_ERROR_OUT_OF_MEMORY);
	struct alloc* a = newAlloc(n, DEVICE_MEM);
	if (!a) RETURN(CUDA_ERROR_OUT_OF_MEMORY);
	used += n;
	*p = a->base;
	RETURN(CUDA_SUCCESS);
}

CUresult cuMemFree_v2(CUdeviceptr p) {
	LOCKED_CTX();
	struct alloc* a = findAlloc(p, 0, DEVICE_MEM);
	if (!a || a->base != p) {
		say("cuMemFree_v2(%#llx): %s", p, describeAddr(p, 0));
		RETURN(CUDA_ERROR_INVALID_VALUE);
	}
	used -= a->size;
	freeAlloc(a);
	RETURN(CUDA_SUCCESS);
}

CUresult cuMemHostAlloc(void** p, size_t n, unsigned flags) {
	LOCKED_CTX();
	if (!p || n == 0 || (flags & ~0xfu)) RETURN(CUDA_ERROR_INVALID_VALUE);
	struct alloc* a = newAlloc(n, PINNED_MEM);
	if (!a) RETURN(CUDA_ERROR_OUT_OF_MEMORY);
	*p = (void*)a->base;
	RETURN(CUDA_SUCCESS);
}

CUresult cuMemFreeHost(void* p) {
	LOCKED_CTX();
	struct alloc* a = findAlloc((uintptr_t)p, 0, PINNED_MEM);
	if (!a || a->base != (uintptr_t)p) {
		say("cuMemFreeHost(%p): %s", p, describeAddr((uintptr_t)p, 0));
		RETURN(CUDA_ERROR_INVALID_VALUE);
	}
	freeAlloc(a);
	RETURN(CUDA_SUCCESS);
}

// A copy or fill: dst and src with the kinds of memory they must still be
// (0: pageable host memory, not checked) when it runs.
struct copyOp {
	const char* call;
	uintptr_t dst, src;
	size_t n;
	int dstKind, srcKind;
	int fill; // a 32-bit fill of n words of value src
};

static CUresult runCopy(void* arg) {
	struct copyOp* c = arg;
	size_t bytes = c->fill ? 4 * c->n : c->n;
	if (c->dstKind && !findAlloc(c->dst, bytes, c->dstKind)) {
		say("%s, queued, ran after its destination was freed: %s", c->call, describeAddr(c->dst, bytes));
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	}
	if (!c->fill && c->srcKind && !findAlloc(c->src, bytes, c->srcKind)) {
		say("%s, queued, ran after its source was freed: %s", c->call, describeAddr(c->src, bytes));
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	}
	if (c->fill) {
		uint32_t v = (uint32_t)c->src;
		uint32_t* d = (uint32_t*)c->dst;
		for (size_t i = 0; i < c->n; i++) d[i] = v;
	} else {
		memmove((void*)c->dst, (const void*)c->src, c->n);
	}
	return CUDA_SUCCESS;
}

// hostKind is PINNED_MEM for n bytes of one cuMemHostAlloc buffer, else 0.
static int hostKind(const void* p, size_t n) { return findAlloc((uintptr_t)p, n, PINNED_MEM) ? PINNED_MEM : 0; }

// copy checks a copy's device memory and runs it at once (sync, or an
// asynchronous copy with pageable memory: the driver stages it, after the
// stream's queued work) or queues it on s.
static CUresult copy(const char* call, uintptr_t dst, int dstKind, uintptr_t src, int srcKind, size_t n, int sync, CUstream s) {
	if (n == 0) return CUDA_SUCCESS;
	if (dstKind == DEVICE_MEM && !findAlloc(dst, n, DEVICE_MEM)) {
		say("%s: destination %s", call, describeAddr(dst, n));
		return CUDA_ERROR_INVALID_VALUE;
	}
	if (srcKind == DEVICE_MEM && !findAlloc(src, n, DEVICE_MEM)) {
		say("%s: source %s", call, describeAddr(src, n));
		return CUDA_ERROR_INVALID_VALUE;
	}
	CUresult r = checkStream(s);
	if (r != CUDA_SUCCESS) return r;
	struct copyOp c = {call, dst, src, n, dstKind, srcKind, 0};
	if (sync) {
		// cuMemcpy is on the legacy stream: it waits for the legacy
		// stream and the blocking streams, not for the non-blocking ones.
		flush(&legacy);
		for (struct stub_stream* t = streams; t; t = t->nextStream)
			if (t->alive && t->ctx == current && !(t->flags & 1)) flush(t);
		if ((r = current->sticky) != CUDA_SUCCESS) return r;
		return runCopy(&c);
	}
	if (!dstKind || !srcKind) { // pageable host memory
		if ((r = flush(streamOf(s))) != CUDA_SUCCESS) return r;
		return runCopy(&c);
	}
	struct copyOp* q = malloc(sizeof *q);
	*q = c;
	enqueue(streamOf(s), runCopy, free, q);
	return CUDA_SUCCESS;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
	LOCKED_CTX();
	RETURN(copy("cuMemcpyHtoD_v2", dst, DEVICE_MEM, (uintptr_t)src, hostKind(src, n), n, 1, 0));
}

CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
	LOCKED_CTX();
	RETURN(copy("cuMemcpyDtoH_v2", (uintptr_t)dst, hostKind(dst, n), src, DEVICE_MEM, n, 1, 0));
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
	LOCKED_CTX();
	RETURN(copy("cuMemcpyDtoD_v2", dst, DEVICE_MEM, src, DEVICE_MEM, n, 1, 0));
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
	LOCKED_CTX();
	RETURN(copy("cuMemcpyHtoDAsync_v2", dst, DEVICE_MEM, (uintptr_t)src, hostKind(src, n), n, 0, s));
}

CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s) {
	LOCKED_CTX();
	RETURN(copy("cuMemcpyDtoHAsync_v2", (uintptr_t)dst, hostKind(dst, n), src, DEVICE_MEM, n, 0, s));
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
	LOCKED_CTX();
	RETURN(copy("cuMemcpyDtoDAsync_v2", dst, DEVICE_MEM, src, DEVICE_MEM, n, 0, s));
}

CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream s) {
	LOCKED_CTX();
	if (n == 0) RETURN(CUDA_SUCCESS);
	if (dst % 4 != 0) {
		say("cuMemsetD32Async: destination %#llx is not 4-byte aligned", dst);
		RETURN(CUDA_ERROR_INVALID_VALUE);
	}
	if (n > SIZE_MAX / 4 || !findAlloc(dst, 4 * n, DEVICE_MEM)) {
		say("cuMemsetD32Async: destination %s", describeAddr(dst, 4 * n));
		RETURN(CUDA_ERROR_INVALID_VALUE);
	}
	CUresult r = checkStream(s);
	if (r != CUDA_SUCCESS) RETURN(r);
	struct copyOp* q = malloc(sizeof *q);
	*q = (struct copyOp){"cuMemsetD32Async", dst, v, n, DEVICE_MEM, 0, 1};
	enqueue(streamOf(s), runCopy, free, q);
	RETURN(CUDA_SUCCESS);
}

// ---- streams and events

CUresult cuStreamCreate(CUstream* s, unsigned flags) {
	LOCKED_CTX();
	if (!s || flags > 1) RETURN(CUDA_ERROR_INVALID_VALUE);
	struct stub_stream* t = calloc(1, sizeof *t);
	t->alive = 1;
	t->flags = flags;
	t->ctx = current;
	t->nextStream = streams;
	streams = t;
	*s = t;
	RETURN(CUDA_SUCCESS);
}

CUresult cuStreamDestroy_v2(CUstream s) {
	LOCKED_CTX();
	if (!s || checkStream(s) != CUDA_SUCCESS) RETURN(CUDA_ERROR_INVALID_HANDLE);
	CUresult r = flush(s); // the driver lets queued work finish
	s->alive = 0;
	RETURN(r);
}

CUresult cuStreamSynchronize(CUstream s) {
	LOCKED_CTX();
	CUresult r = checkStream(s);
	if (r != CUDA_SUCCESS) RETURN(r);
	RETURN(flush(streamOf(s)));
}

struct stub_event {
	int alive;
	unsigned flags;
	int recorded, done;
	struct stub_stream* stream;
	struct timespec at;
};

static CUresult runRecord(void* arg) {
	struct stub_event* e = arg;
	clock_gettime(CLOCK_MONOTONIC, &e->at);
	e->done = 1;
	return CUDA_SUCCESS;
}

CUresult cuEventCreate(CUevent* e, unsigned flags) {
	LOCKED_CTX();
	if (!e || flags & ~0x7u) RETURN(CUDA_ERROR_INVALID_VALUE);
	*e = calloc(1, sizeof **e);
	(*e)->alive = 1;
	(*e)->flags = flags;
	RETURN(CUDA_SUCCESS);
}

CUresult cuEventDestroy_v2(CUevent e) {
	LOCKED_CTX();
	if (!e || !e->alive) RETURN(CUDA_ERROR_INVALID_HANDLE);
	e->alive = 0; // kept: a queued record still writes it
	RETURN(CUDA_SUCCESS);
}

CUresult cuEventRecord(CUevent e, CUstream s) {
	LOCKED_CTX();
	if (!e || !e->alive) RETURN(CUDA_ERROR_INVALID_HANDLE);
	CUresult r = checkStream(s);
	if (r != CUDA_SUCCESS) RETURN(r);
	e->recorded = 1;
	e->done = 0;
	e->stream = streamOf(s);
	enqueue(e->stream, runRecord, 0, e);
	RETURN(CUDA_SUCCESS);
}

CUresult cuEventSynchronize(CUevent e) {
	LOCKED_CTX();
	if (!e || !e->alive) RETURN(CUDA_ERROR_INVALID_HANDLE);
	RETURN(e->recorded ? flush(e->stream) : CUDA_SUCCESS);
}

CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned flags) {
	LOCKED_CTX();
	if (!e || !e->alive || flags != 0) RETURN(CUDA_ERROR_INVALID_HANDLE);
	CUresult r = checkStream(s);
	if (r != CUDA_SUCCESS) RETURN(r);
	// The stub's streams run only when synchronized: running the event's
	// stream now orders everything s queues later after it.
	if (e->recorded && e->stream != streamOf(s)) RETURN(flush(e->stream));
	RETURN(CUDA_SUCCESS);
}

CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
	LOCKED_CTX();
	if (!ms || !start || !end || !start->alive || !end->alive) RETURN(CUDA_ERROR_INVALID_HANDLE);
	if ((start->flags | end->flags) & 0x2 || !start->recorded || !end->recorded) RETURN(CUDA_ERROR_INVALID_HANDLE);
	if (!start->done || !end->done) RETURN(CUDA_ERROR_NOT_READY);
	*ms = (float)((end->at.tv_sec - start->at.tv_sec) * 1e3 + (end->at.tv_nsec - start->at.tv_nsec) / 1e6);
	RETURN(CUDA_SUCCESS);
}

// ---- modules

struct stub_module {
	int alive;
	unsigned char* image;
	size_t len;
	int cubin;
};

struct stub_func {
	CUmodule module;
	char name[256];
	int nparams;
	uint64_t sizes[64];
	int regs;         // from the CUBIN; 0 for PTX (unknown)
	int staticShared; // from the CUBIN
	int maxThreads;   // the launch bounds (0: none)
	int maxDynamic;   // cuFuncSetAttribute's maximum dynamic shared memory (0: not set)
};

// A 64-bit little-endian ELF's header and section header fields.
static uint16_t u16(const unsigned char* p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32(const unsigned char* p) { return (uint32_t)u16(p) | (uint32_t)u16(p + 2) << 16; }
static uint64_t u64(const unsigned char* p) { return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32; }

struct shdr {
	uint32_t name, type;
	uint64_t off, size;
	uint32_t link, info;
	uint64_t entsize;
};

static struct shdr section(const unsigned char* elf, int i) {
	const unsigned char* s = elf + u64(elf + 0x28) + (size_t)i * u16(elf + 0x3a);
	return (struct shdr){u32(s), u32(s + 4), u64(s + 0x18), u64(s + 0x20), u32(s + 0x28), u32(s + 0x2c), u64(s + 0x38)};
}

static const char* sectionName(const unsigned char* elf, struct shdr s) {
	struct shdr names = section(elf, u16(elf + 0x3e));
	return (const char*)elf + names.off + s.name;
}

// elfSize is the extent of a CUBIN: its header, sections and tables.
static size_t elfSize(const unsigned char* elf) {
	size_t n = u64(elf + 0x28) + (size_t)u16(elf + 0x3c) * u16(elf + 0x3a);
	size_t ph = u64(elf + 0x20) + (size_t)u16(elf + 0x38) * u16(elf + 0x36);
	if (ph > n) n = ph;
	for (int i = 0; i < u16(elf + 0x3c); i++) {
		struct shdr s = section(elf, i);
		if (s.type != 8 && s.off + s.size > n) n = s.off + s.size; // SHT_NOBITS takes no room
	}
	return n;
}

// cubinKernel finds kernel's FUNC symbol in a CUBIN and reads its
// registers, static shared memory and launch bounds into f; 0 if absent.
static int cubinKernel(const unsigned char* elf, const char* kernel, struct stub_func* f) {
	int nsec = u16(elf + 0x3c), symIndex = -1;
	for (int i = 0; i < nsec && symIndex < 0; i++) {
		struct shdr s = section(elf, i);
		if (s.type != 2 || s.entsize != 24) continue; // SHT_SYMTAB
		struct shdr str = section(elf, (int)s.link);
		for (uint64_t j = 0; j < s.size / 24; j++) {
			const unsigned char* sym = elf + s.off + j * 24;
			if ((sym[4] & 0xf) == 2 && strcmp((const char*)elf + str.off + u32(sym), kernel) == 0) symIndex = (int)j; // STT_FUNC
		}
	}
	if (symIndex < 0) return 0;
	char shared[300], info[300];
	snprintf(shared, sizeof shared, ".nv.shared.%s", kernel);
	snprintf(info, sizeof info, ".nv.info.%s", kernel);
	for (int i = 0; i < nsec; i++) {
		struct shdr s = section(elf, i);
		const char* name = sectionName(elf, s);
		if (strcmp(name, shared) == 0) f->staticShared = (int)s.size;
		int global = strcmp(name, ".nv.info") == 0;
		if (!global && strcmp(name, info) != 0) continue;
		// Attributes: format (1 byte), attribute (1), then for
		// EIFMT_SVAL (4) a 2-byte size and the value; EIFMT_HVAL (3) a
		// 2-byte value; EIFMT_NVAL (1) nothing more.
		for (uint64_t o = s.off; o + 4 <= s.off + s.size;) {
			unsigned fmt = elf[o], attr = elf[o + 1];
			if (fmt != 4) {
				o += fmt == 1 ? 2 : 4;
				continue;
			}
			unsigned size = u16(elf + o + 2);
			const unsigned char* v = elf + o + 4;
			if (global && attr == 0x2f && size == 8 && (int)u32(v) == symIndex) f->regs = (int)u32(v + 4); // EIATTR_REGCOUNT
			if (!global && (attr == 0x05 || attr == 0x10) && size == 12)                                   // MAX_THREADS, REQNTID
				f->maxThreads = (int)(u32(v) * u32(v + 4) * u32(v + 8));
			o += 4 + size;
		}
	}
	return 1;
}

// ptxEntry reports whether a PTX text has an entry named kernel.
static int ptxEntry(const char* ptx, const char* kernel) {
	size_t n = strlen(kernel);
	for (const char* p = strstr(ptx, ".entry"); p; p = strstr(p + 1, ".entry")) {
		const char* q = p + 6;
		while (*q == ' ' || *q == '\t') q++;
		if (strncmp(q, kernel, n) == 0 && (q[n] == '(' || q[n] == ' ' || q[n] == '\n' || q[n] == '\r' || q[n] == '\t')) return 1;
	}
	return 0;
}

// jitLog writes a JIT error into CU_JIT_ERROR_LOG_BUFFER when given.
static void jitLog(unsigned n, const int* opts, void** vals, const char* fmt, ...) {
	char* buf = 0;
	size_t len = 0;
	for (unsigned i = 0; i < n; i++) {
		if (opts[i] == 5) buf = vals[i];                    // CU_JIT_ERROR_LOG_BUFFER
		if (opts[i] == 6) len = (size_t)(uintptr_t)vals[i]; // CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
	}
	if (!buf || !len) return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

CUresult cuModuleLoadDataEx(CUmodule* m, const void* image, unsigned n, int* opts, void** vals) {
	LOCKED_CTX();
	if (!m || !image || (n && (!opts || !vals))) RETURN(CUDA_ERROR_INVALID_VALUE);
	const unsigned char* img = image;
	size_t len;
	int cubin = memcmp(img, "\x7f" "ELF", 4) == 0;
	if (cubin) {
		if (img[4] != 2 || img[5] != 1 || u16(img + 0x12) != 190) { // ELFCLASS64, little-endian, EM_CUDA
			jitLog(n, opts, vals, "not a CUDA ELF image");
			RETURN(CUDA_ERROR_INVALID_IMAGE);
		}
		uint32_t flags = u32(img + 0x30);
		int sm = img[8] >= 8 ? (int)(flags >> 8 & 0xff) : (int)(flags & 0xff); // EI_ABIVERSION 8 moved the SM
		if (sm != DEVICE_ARCH) {
			jitLog(n, opts, vals, "a CUBIN for sm_%d, the device is sm_%d", sm, DEVICE_ARCH);
			RETURN(CUDA_ERROR_NO_BINARY_FOR_GPU);
		}
		len = elfSize(img);
	} else {
		const char* ptx = image;
		len = strlen(ptx) + 1;
		const char* v = strstr(ptx, ".version");
		int major, minor, target;
		if (!v || sscanf(v, ".version %d.%d", &major, &minor) != 2) {
			jitLog(n, opts, vals, "ptxas fatal   : no .version directive: not PTX");
			RETURN(CUDA_ERROR_INVALID_PTX);
		}
		if (major * 10 + minor > PTX_ISA_MAX) {
			jitLog(n, opts, vals, "ptxas application ptx input, line 1; fatal   : Unsupported .version %d.%d; current version is '%d.%d'",
			       major, minor, PTX_ISA_MAX / 10, PTX_ISA_MAX % 10);
			RETURN(CUDA_ERROR_UNSUPPORTED_PTX_VERSION);
		}
		const char* t = strstr(ptx, ".target");
		if (!t || sscanf(t, ".target sm_%d", &target) != 1) {
			jitLog(n, opts, vals, "ptxas fatal   : no .target sm_XX directive");
			RETURN(CUDA_ERROR_INVALID_PTX);
		}
		if (target > DEVICE_ARCH) {
			jitLog(n, opts, vals, "ptxas fatal   : SM version specified by .target (sm_%d) is higher than the device's (sm_%d)", target,
			       DEVICE_ARCH);
			RETURN(CUDA_ERROR_INVALID_PTX);
		}
	}
	CUmodule mod = calloc(1, sizeof *mod);
	mod->alive = 1;
	mod->cubin = cubin;
	mod->len = len;
	mod->image = malloc(len);
	memcpy(mod->image, img, len);
	*m = mod;
	RETURN(CUDA_SUCCESS);
}

CUresult cuModuleUnload(CUmodule m) {
	LOCKED_CTX();
	if (!m || !m->alive) RETURN(CUDA_ERROR_INVALID_HANDLE);
	m->alive = 0; // kept: its functions' handles now fail
	free(m->image);
	m->image = 0;
	RETURN(CUDA_SUCCESS);
}

CUresult cuModuleGetFunction(CUfunction* f, CUmodule m, const char* name) {
	LOCKED_CTX();
	if (!f || !name) RETURN(CUDA_ERROR_INVALID_VALUE);
	if (!m || !m->alive) RETURN(CUDA_ERROR_INVALID_HANDLE);
	struct stub_func* fn = calloc(1, sizeof *fn);
	fn->module = m;
	snprintf(fn->name, sizeof fn->name, "%s", name);
	int found = m->cubin ? cubinKernel(m->image, name, fn) : ptxEntry((const char*)m->image, name);
	if (found) fn->nparams = emuParams(name, fn->sizes, 64);
	if (!found || fn->nparams < 0 || fn->nparams > 64) {
		if (found) say("cuModuleGetFunction(%s): the module has it, the emulator does not (or with over 64 parameters)", name);
		free(fn);
		RETURN(CUDA_ERROR_NOT_FOUND);
	}
	*f = fn;
	RETURN(CUDA_SUCCESS);
}

CUresult cuFuncSetAttribute(CUfunction f, int attr, int v) {
	LOCKED_CTX();
	if (!f || !f->module->alive) RETURN(CUDA_ERROR_INVALID_HANDLE);
	if (attr != 8) { // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
		say("cuFuncSetAttribute(%s, %d): an attribute the stub does not model", f->name, attr);
		RETURN(CUDA_ERROR_INVALID_VALUE);
	}
	if (v < 0 || v + f->staticShared > SHARED_OPTIN) RETURN(CUDA_ERROR_INVALID_VALUE);
	f->maxDynamic = v;
	RETURN(CUDA_SUCCESS);
}

// ---- launches

struct launchOp {
	CUfunction f;
	unsigned grid[3], block[3], shared;
	void* args[64];
	unsigned char* params;
};

static void releaseLaunch(void* arg) {
	struct launchOp* l = arg;
	free(l->params);
	free(l);
}

static CUresult runLaunch(void* arg) {
	struct launchOp* l = arg;
	char msg[4096];
	uint64_t fault[3] = {0, 0, 0};
	msg[0] = 0;
	int rc = emuLaunch(l->f->name, l->grid, l->block, l->shared, l->args, l->f->sizes, l->f->nparams, msg, sizeof msg, fault);
	switch (rc) {
	case 0:
		return CUDA_SUCCESS;
	case 1: // a note: a barrier passed with threads returned (legal)
		return CUDA_SUCCESS;
	case -2:
		say("%s: %s (addr2line -f -i -C -e %s %#llx)", l->f->name, msg, emuPath, (unsigned long long)fault[2]);
		return fault[0] == 11 || fault[0] == 7 ? CUDA_ERROR_ILLEGAL_ADDRESS : CUDA_ERROR_LAUNCH_FAILED; // SIGSEGV, SIGBUS
	default:
		say("%s: %s", l->f->name, msg);
		return CUDA_ERROR_LAUNCH_FAILED;
	}
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared,
                        CUstream s, void** params, void** extra) {
	LOCKED_CTX();
	if (!f || !f->module->alive) RETURN(CUDA_ERROR_INVALID_HANDLE);
	CUresult r = checkStream(s);
	if (r != CUDA_SUCCESS) RETURN(r);
	unsigned long long threads = (unsigned long long)bx * by * bz;
	if (gx == 0 || gy == 0 || gz == 0 || gx > 2147483647u || gy > 65535 || gz > 65535 || bx == 0 || by == 0 || bz == 0 || bx > 1024 ||
	    by > 1024 || bz > 64 || threads > 1024) {
		say("cuLaunchKernel(%s): grid (%u,%u,%u), block (%u,%u,%u): out of the device's limits", f->name, gx, gy, gz, bx, by, bz);
		RETURN(CUDA_ERROR_INVALID_VALUE);
	}
	if (f->maxThreads && threads > (unsigned long long)f->maxThreads) {
		say("cuLaunchKernel(%s): a block of %llu threads, its launch bounds allow %d", f->name, threads, f->maxThreads);
		RETURN(CUDA_ERROR_INVALID_VALUE);
	}
	int limit = f->maxDynamic ? f->maxDynamic + f->staticShared : SHARED_DEFAULT;
	if ((unsigned long long)shared + f->staticShared > (unsigned long long)limit) {
		say("cuLaunchKernel(%s): %u bytes of dynamic shared memory and %d static, at most %d", f->name, shared, f->staticShared, limit);
		RETURN(CUDA_ERROR_INVALID_VALUE);
	}
	if (f->regs) {
		// Registers are allocated a warp at a time, in units of 256.
		unsigned long long perWarp = ((unsigned long long)f->regs * 32 + 255) / 256 * 256, warps = (threads + 31) / 32;
		if (perWarp * warps > REGS_PER_BLOCK) {
			say("cuLaunchKernel(%s): a block of %llu threads at %d registers each needs %llu registers, the device has %d a block",
			    f->name, threads, f->regs, perWarp * warps, REGS_PER_BLOCK);
			RETURN(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES);
		}
	}
	if ((params && extra) || (f->nparams > 0 && !params)) RETURN(CUDA_ERROR_INVALID_VALUE);
	// The driver copies the parameters at the launch: the caller may
	// reuse them at once.
	struct launchOp* l = calloc(1, sizeof *l);
	*l = (struct launchOp){f, {gx, gy, gz}, {bx, by, bz}, shared, {0}, 0};
	size_t total = 0;
	for (int i = 0; i < f->nparams; i++) total += (f->sizes[i] + 15) / 16 * 16;
	l->params = malloc(total ? total : 1);
	size_t off = 0;
	for (int i = 0; i < f->nparams; i++) {
		memcpy(l->params + off, params[i], f->sizes[i]);
		l->args[i] = l->params + off;
		off += (f->sizes[i] + 15) / 16 * 16;
	}
	enqueue(streamOf(s), runLaunch, releaseLaunch, l);
	RETURN(CUDA_SUCCESS);
}

// ---- for the stub cuBLAS (stubcuda.h)

CUresult stubcuda_enqueue(CUstream s, CUresult (*fn)(void*), void (*release)(void*), void* arg) {
	pthread_mutex_lock(&mu);
	CUresult r = needCtx();
	if (r == CUDA_SUCCESS) r = checkStream(s);
	if (r != CUDA_SUCCESS) {
		if (release) release(arg);
		RETURN(r);
	}
	enqueue(streamOf(s), fn, release, arg);
	RETURN(CUDA_SUCCESS);
}

const char* stubcuda_device_range(CUdeviceptr p, size_t n) {
	pthread_mutex_lock(&mu);
	const char* msg = findAlloc(p, n, DEVICE_MEM) ? 0 : describeAddr(p, n);
	pthread_mutex_unlock(&mu);
	return msg;
}

CUresult stubcuda_stream_ok(CUstream s) {
	pthread_mutex_lock(&mu);
	CUresult r = needCtx();
	if (r == CUDA_SUCCESS) r = checkStream(s);
	RETURN(r);
}

int stubcuda_has_context(void) {
	pthread_mutex_lock(&mu);
	int ok = needCtx() == CUDA_SUCCESS;
	pthread_mutex_unlock(&mu);
	return ok;
}
