// ds_emu.cpp: the runtime of the CUDA emulator of the backend's tests (see
// ds_emu.h): the launch table, the fibers and their scheduler, barriers and
// warp shuffles, shared memory, and faults turned into errors.
//
// A launch runs its blocks one after another. The threads of a block are
// fibers on the calling OS thread; the scheduler passes over them, in
// increasing and then decreasing order of their linear index, running each
// ready one until it waits (a barrier, a shuffle) or returns. A pass in
// which nothing ran while threads remain is a deadlock: the launch fails
// naming where the threads wait. A fault in a kernel (SIGSEGV and SIGBUS:
// the guard pages around the device allocations, the dynamic shared memory
// and the fibers' stacks; SIGILL: an array index out of bounds under
// -fsanitize=bounds; SIGFPE: an integer division by zero) jumps back to the
// launch, which fails naming the kernel, the block and the thread.
#include "ds_emu.h"

#include <dlfcn.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#define DS_EMU_EXPORT extern "C" __attribute__((visibility("default")))

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

struct Kernel {
	void (*stub)(void**);
	std::vector<size_t> sizes;
};

std::map<std::string, Kernel>& table() {
	static std::map<std::string, Kernel> t;
	return t;
}

enum State { READY, AT_BARRIER, AT_SHUFFLE, DONE };

struct Fiber {
#if defined(__x86_64__)
	void* sp; // the saved stack pointer (ds_emu_switch)
#else
	ucontext_t ctx;
#endif
	State state;
	bool started;
	uint3 tid;
	unsigned linear;
	const char* file; // where it waits
	int line;
	int mode, arg, width; // the shuffle it waits in
	unsigned mask;
	uint64_t value, result;
};

const size_t kStack = 64 << 10;
const size_t kSharedCap = 64 << 10;

struct Launch {
	const char* kernel;
	void** args;
	void (*stub)(void**);
	std::vector<Fiber> fibers;
	unsigned nthreads, live, atBarrier;
	int cur; // the running fiber, -1 in the scheduler
	std::string error, note;
	bool failed;
	// memory kept between launches
	char* stacks;
	size_t stacksFor, page;
	char* sharedEnd;      // the end of the dynamic shared memory, a guard page after it
	char* shared;         // this launch's dynamic shared memory
	size_t sharedBytes;   // its size rounded up to 16
	std::vector<std::pair<void*, size_t> > statics; // the __shared__ variables seen
	// faults
	sigjmp_buf jump;
	volatile sig_atomic_t inLaunch;
	volatile long thread;
	volatile int faultSig;
	volatile uint64_t faultAddr, faultPC;
#if defined(__x86_64__)
	void* schedSP;
#else
	ucontext_t schedCtx;
#endif
};

Launch L;
struct sigaction oldAction[4];
const int kSignals[4] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};

void append(std::string& s, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void append(std::string& s, const char* fmt, ...) {
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	s += buf;
}

std::string where() {
	std::string s;
	append(s, "%s block (%u,%u,%u)", L.kernel, blockIdx.x, blockIdx.y, blockIdx.z);
	if (L.cur >= 0) {
		const Fiber& f = L.fibers[L.cur];
		append(s, " thread (%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z);
	}
	return s;
}

#if defined(__x86_64__)
// ds_emu_switch saves the callee-saved registers, MXCSR and the x87 control
// word on the current stack, stores its pointer in *save and resumes the
// context whose stack pointer is next.
extern "C" void ds_emu_switch(void** save, void* next);
asm(R"(
	.text
	.p2align 4
	.hidden ds_emu_switch
	.type ds_emu_switch,@function
ds_emu_switch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	subq $8, %rsp
	stmxcsr (%rsp)
	fnstcw 4(%rsp)
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	ldmxcsr (%rsp)
	fldcw 4(%rsp)
	addq $8, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.size ds_emu_switch,.-ds_emu_switch
)");
#endif

void fiberMain();

// toScheduler suspends the running fiber.
void toScheduler() {
	Fiber& f = L.fibers[L.cur];
#if defined(__x86_64__)
	ds_emu_switch(&f.sp, L.schedSP);
#else
	swapcontext(&f.ctx, &L.schedCtx);
#endif
}

// run resumes (or starts) fiber i until it waits or returns.
void run(unsigned i) {
	Fiber& f = L.fibers[i];
	L.cur = (int)i;
	threadIdx = f.tid;
	char* top = L.stacks + (size_t)(i + 1) * (kStack + L.page);
	if (!f.started) {
		f.started = true;
#if defined(__x86_64__)
		// The frame ds_emu_switch pops: MXCSR and the control word, six
		// registers, then fiberMain as the return address, entered with
		// the stack aligned as after a call.
		uint64_t* sp = (uint64_t*)top;
		*--sp = 0; // fiberMain's return address: it never returns
		*--sp = (uint64_t)(void*)fiberMain;
		for (int r = 0; r < 6; r++) *--sp = 0;
		*--sp = 0x1f80ull | (0x037full << 32);
		f.sp = sp;
#else
		getcontext(&f.ctx);
		f.ctx.uc_stack.ss_sp = top - kStack;
		f.ctx.uc_stack.ss_size = kStack;
		f.ctx.uc_link = 0;
		makecontext(&f.ctx, fiberMain, 0);
#endif
	}
#if defined(__x86_64__)
	ds_emu_switch(&L.schedSP, f.sp);
#else
	swapcontext(&L.schedCtx, &f.ctx);
#endif
	L.cur = -1;
}

// fail ends the launch with an error, from a fiber.
void fail(const std::string& msg) {
	if (!L.failed) L.error = msg;
	L.failed = true;
	toScheduler(); // never resumed
}

// tryBarrier releases the block's barrier when every live thread waits at
// it at the same place (threads that returned count as arrived).
void tryBarrier() {
	if (L.atBarrier == 0 || L.atBarrier != L.live) return;
	const Fiber* first = 0;
	for (Fiber& f : L.fibers) {
		if (f.state != AT_BARRIER) continue;
		if (!first) first = &f;
		else if (f.line != first->line || strcmp(f.file, first->file) != 0) return; // a deadlock, reported by the scheduler
	}
	if (L.live < L.nthreads && L.note.empty())
		append(L.note, "%s block (%u,%u,%u): __syncthreads at %s:%d passed with %u of %u threads already returned", L.kernel,
		       blockIdx.x, blockIdx.y, blockIdx.z, first->file, first->line, L.nthreads - L.live, L.nthreads);
	for (Fiber& f : L.fibers)
		if (f.state == AT_BARRIER) f.state = READY;
	L.atBarrier = 0;
}

// tryShuffle completes the shuffle of the lanes in mask of the warp from
// base when all of them wait in it at the same place with the same mask.
void tryShuffle(unsigned base, unsigned mask, const char* file, int line) {
	for (unsigned l = 0; l < 32; l++) {
		if (!(mask >> l & 1)) continue;
		if (base + l >= L.nthreads) return; // a lane that does not exist: a deadlock
		const Fiber& f = L.fibers[base + l];
		if (f.state != AT_SHUFFLE || f.mask != mask || f.line != line || strcmp(f.file, file) != 0) return;
	}
	for (unsigned l = 0; l < 32; l++) {
		if (!(mask >> l & 1)) continue;
		Fiber& f = L.fibers[base + l];
		const int w = f.width, seg = (int)l & ~(w - 1);
		int src = (int)l;
		switch (f.mode) {
		case 0: // xor: a lane of a later segment gives the caller's own value
			src = (int)l ^ f.arg;
			if ((src & ~(w - 1)) > seg) src = (int)l;
			break;
		case 1: // down
			src = ((int)l & (w - 1)) + f.arg < w ? (int)l + f.arg : (int)l;
			break;
		case 2: // up
			src = ((int)l & (w - 1)) >= f.arg ? (int)l - f.arg : (int)l;
			break;
		default: // idx
			src = seg + (((f.arg % w) + w) % w);
		}
		if (src < 0 || src > 31 || !(mask >> src & 1)) {
			std::string s;
			append(s, "%s: lane %u's shuffle at %s:%d reads lane %d, which is not in its mask 0x%08x", where().c_str(), l, file,
			       line, src, mask);
			fail(s);
		}
		f.result = L.fibers[base + src].value;
	}
	for (unsigned l = 0; l < 32; l++)
		if (mask >> l & 1) L.fibers[base + l].state = READY;
}

void fiberMain() {
	L.stub(L.args);
	Fiber& f = L.fibers[L.cur];
	f.state = DONE;
	L.live--;
	tryBarrier();
	toScheduler(); // never resumed
}

// deadlock describes where the threads of a block that cannot go on wait.
std::string deadlock() {
	std::map<std::string, unsigned> sites;
	for (const Fiber& f : L.fibers) {
		std::string s;
		if (f.state == AT_BARRIER) append(s, "__syncthreads at %s:%d", f.file, f.line);
		else if (f.state == AT_SHUFFLE)
			append(s, "a shuffle (mask 0x%08x) at %s:%d in warp %u", f.mask, f.file, f.line, f.linear / 32);
		else continue;
		sites[s]++;
	}
	std::string s;
	append(s, "%s block (%u,%u,%u): deadlock: no thread can go on (%u of %u returned);", L.kernel, blockIdx.x, blockIdx.y,
	       blockIdx.z, L.nthreads - L.live, L.nthreads);
	for (auto& kv : sites) append(s, " %u waiting in %s;", kv.second, kv.first.c_str());
	s.pop_back();
	return s;
}

// runBlock runs the block at blockIdx; false when the launch failed.
bool runBlock() {
	for (unsigned i = 0; i < L.nthreads; i++) {
		Fiber& f = L.fibers[i];
		f.state = READY;
		f.started = false;
		f.linear = i;
		f.tid = uint3{i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y)};
	}
	L.live = L.nthreads;
	L.atBarrier = 0;
	memset(L.shared, 0xff, L.sharedBytes);
	for (auto& s : L.statics) memset(s.first, 0xff, s.second);
	for (bool up = true; L.live > 0; up = !up) {
		bool ran = false;
		for (unsigned k = 0; k < L.nthreads; k++) {
			const unsigned i = up ? k : L.nthreads - 1 - k;
			if (L.fibers[i].state != READY) continue;
			run(i);
			ran = true;
			if (L.failed) return false;
		}
		if (!ran && L.live > 0) {
			L.error = deadlock();
			return false;
		}
	}
	return true;
}

void onSignal(int sig, siginfo_t* info, void* ctx) {
	if (L.inLaunch && L.thread == syscall(SYS_gettid)) {
		L.inLaunch = 0;
		L.faultSig = sig;
		L.faultAddr = (uint64_t)info->si_addr;
#if defined(__x86_64__)
		L.faultPC = (uint64_t)((ucontext_t*)ctx)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
		L.faultPC = (uint64_t)((ucontext_t*)ctx)->uc_mcontext.pc;
#endif
		siglongjmp(L.jump, 1);
	}
	// Not the emulator's: the handler that was there before (the Go
	// runtime's) gets it.
	for (int i = 0; i < 4; i++) {
		if (kSignals[i] != sig) continue;
		const struct sigaction& o = oldAction[i];
		if (o.sa_flags & SA_SIGINFO) {
			o.sa_sigaction(sig, info, ctx);
		} else if (o.sa_handler == SIG_DFL || o.sa_handler == SIG_IGN) {
			sigaction(sig, &o, 0); // the fault happens again, with the default action
		} else {
			o.sa_handler(sig);
		}
	}
}

// setUp allocates the fibers' stacks (each with a guard page below it) and
// the dynamic shared memory (with a guard page after it), and installs the
// signal handler, the first time.
bool setUp(unsigned nthreads, std::string& err) {
	if (!L.page) {
		L.page = (size_t)sysconf(_SC_PAGESIZE);
		char* m = (char*)mmap(0, kSharedCap + 2 * L.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED) {
			err = "cannot map the shared memory";
			return false;
		}
		mprotect(m, L.page, PROT_NONE);
		mprotect(m + L.page + kSharedCap, L.page, PROT_NONE);
		L.sharedEnd = m + L.page + kSharedCap;
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = onSignal;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		for (int i = 0; i < 4; i++) sigaction(kSignals[i], &sa, &oldAction[i]);
	}
	if (L.stacksFor < nthreads) {
		if (L.stacks) munmap(L.stacks, L.stacksFor * (kStack + L.page));
		const size_t n = nthreads * (kStack + L.page);
		char* m = (char*)mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED) {
			L.stacks = 0;
			L.stacksFor = 0;
			err = "cannot map the fibers' stacks";
			return false;
		}
		for (unsigned i = 0; i < nthreads; i++) mprotect(m + i * (kStack + L.page), L.page, PROT_NONE);
		L.stacks = m;
		L.stacksFor = nthreads;
	}
	return true;
}

} // namespace

extern "C" {

bool ds_emu_register_kernel(const char* name, void (*stub)(void**), int nargs, const size_t* sizes) {
	table()[name] = Kernel{stub, std::vector<size_t>(sizes, sizes + nargs)};
	return true;
}

bool ds_emu_register_shared(void* p, size_t n) {
	L.statics.push_back(std::make_pair(p, n));
	memset(p, 0xff, n);
	return true;
}

void* ds_emu_dynamic_shared(void) { return L.shared; }

void ds_emu_syncthreads(const char* file, int line) {
	Fiber& f = L.fibers[L.cur];
	f.state = AT_BARRIER;
	f.file = file;
	f.line = line;
	L.atBarrier++;
	tryBarrier();
	if (f.state == AT_BARRIER) toScheduler();
}

uint64_t ds_emu_shfl(int mode, unsigned mask, uint64_t v, int arg, int width, const char* file, int line) {
	Fiber& f = L.fibers[L.cur];
	const unsigned lane = f.linear & 31;
	if (!(mask >> lane & 1)) {
		std::string s;
		append(s, "%s: a shuffle at %s:%d with mask 0x%08x, which does not name the calling lane %u", where().c_str(), file, line,
		       mask, lane);
		fail(s);
	}
	if (width < 1 || width > 32 || (width & (width - 1))) {
		std::string s;
		append(s, "%s: a shuffle at %s:%d of width %d (a power of two up to 32)", where().c_str(), file, line, width);
		fail(s);
	}
	f.state = AT_SHUFFLE;
	f.mode = mode;
	f.mask = mask;
	f.value = v;
	f.arg = arg;
	f.width = width;
	f.file = file;
	f.line = line;
	tryShuffle(f.linear - lane, mask, file, line);
	if (f.state == AT_SHUFFLE) toScheduler();
	return f.result;
}

// ds_emu_kernel_params writes the sizes of a kernel's parameters (at most
// max of them) into sizes and returns their number, or -1 for a kernel
// not in the table: what a driver reads from a module, for the tests'
// stub libcuda (testdata/stubcuda/cuda.c), which launches with
// cuLaunchKernel's arguments alone.
DS_EMU_EXPORT int ds_emu_kernel_params(const char* kernel, uint64_t* sizes, int max) {
	auto it = table().find(kernel);
	if (it == table().end()) return -1;
	const std::vector<size_t>& s = it->second.sizes;
	for (size_t i = 0; i < s.size() && (int)i < max; i++) sizes[i] = s[i];
	return (int)s.size();
}

// ds_emu_launch runs a kernel: grid and block are 3 dimensions each,
// shared the bytes of dynamic shared memory, args cuLaunchKernel's
// argument pointers with their sizes. It returns 0, or 1 with a note in msg
// (a barrier passed with returned threads), or -1 with an error in msg, or
// -2 for a fault with its signal, address and code offset in fault[0..2]
// (the offset from the library's base, for addr2line).
DS_EMU_EXPORT int ds_emu_launch(const char* kernel, const unsigned* grid, const unsigned* block, unsigned shared,
                                void** args, const uint64_t* sizes, int nargs, char* msg, int msglen, uint64_t* fault) {
	std::string err;
	auto done = [&](int code, const std::string& s) {
		snprintf(msg, (size_t)msglen, "%s", s.c_str());
		return code;
	};
	auto it = table().find(kernel);
	if (it == table().end()) return done(-1, std::string("no kernel ") + kernel + " in the emulator's table");
	const Kernel& k = it->second;
	if ((int)k.sizes.size() != nargs) {
		append(err, "%s takes %zu arguments, launched with %d", kernel, k.sizes.size(), nargs);
		return done(-1, err);
	}
	for (int i = 0; i < nargs; i++)
		if (k.sizes[i] != sizes[i]) {
			append(err, "%s: argument %d has %zu bytes in the CUDA C, passed %llu", kernel, i, k.sizes[i],
			       (unsigned long long)sizes[i]);
			return done(-1, err);
		}
	const unsigned long long nthreads = (unsigned long long)block[0] * block[1] * block[2];
	if (nthreads == 0 || nthreads > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || shared > kSharedCap) {
		append(err, "%s: launch of grid (%u,%u,%u), block (%u,%u,%u), %u bytes of shared memory: out of the device's limits", kernel,
		       grid[0], grid[1], grid[2], block[0], block[1], block[2], shared);
		return done(-1, err);
	}
	if (!setUp((unsigned)nthreads, err)) return done(-1, err);
	L.kernel = kernel;
	L.stub = k.stub;
	L.args = args;
	L.nthreads = (unsigned)nthreads;
	L.fibers.assign(nthreads, Fiber());
	L.cur = -1;
	L.error.clear();
	L.note.clear();
	L.failed = false;
	L.sharedBytes = (shared + 15u) & ~(size_t)15;
	L.shared = L.sharedEnd - L.sharedBytes;
	gridDim = dim3{grid[0], grid[1], grid[2]};
	blockDim = dim3{block[0], block[1], block[2]};
	L.thread = syscall(SYS_gettid);
	if (sigsetjmp(L.jump, 1)) {
		const char* what = L.faultSig == SIGILL  ? "an array index out of bounds (a -fsanitize=bounds trap)"
		                   : L.faultSig == SIGFPE ? "an arithmetic exception (an integer division by zero?)"
		                                          : "an invalid memory access";
		append(err, "%s: %s at address %#llx", where().c_str(), what, (unsigned long long)L.faultAddr);
		Dl_info info;
		fault[0] = (uint64_t)L.faultSig;
		fault[1] = L.faultAddr;
		fault[2] = dladdr((void*)L.faultPC, &info) ? L.faultPC - (uint64_t)info.dli_fbase : 0;
		L.cur = -1;
		return done(-2, err);
	}
	L.inLaunch = 1;
	bool ok = true;
	for (unsigned z = 0; ok && z < grid[2]; z++)
		for (unsigned y = 0; ok && y < grid[1]; y++)
			for (unsigned x = 0; ok && x < grid[0]; x++) {
				blockIdx = uint3{x, y, z};
				ok = runBlock();
			}
	L.inLaunch = 0;
	if (!ok) return done(-1, L.error);
	if (!L.note.empty()) return done(1, L.note);
	return done(0, "");
}

} // extern "C"
