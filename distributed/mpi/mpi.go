//go:build mpi

package mpi

/*
#cgo pkg-config: ompi
#include <stdlib.h>
#include <mpi.h>

static int dn_init(int *provided) {
	return MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided);
}
static int dn_world(int *rank, int *size) {
	int rc = MPI_Comm_rank(MPI_COMM_WORLD, rank);
	return rc != MPI_SUCCESS ? rc : MPI_Comm_size(MPI_COMM_WORLD, size);
}
static int dn_local_rank(int *rank) {
	MPI_Comm node;
	int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
	if (rc != MPI_SUCCESS) return rc;
	rc = MPI_Comm_rank(node, rank);
	MPI_Comm_free(&node);
	return rc;
}
static int dn_iallreduce_f32(float *buf, int n, MPI_Request *req) {
	return MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, req);
}
static int dn_allreduce_f32(float *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int dn_iallreduce_f64(double *buf, int n, int op, MPI_Request *req) {
	MPI_Op o = op == 0 ? MPI_SUM : op == 1 ? MPI_MIN : MPI_MAX;
	return MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, o, MPI_COMM_WORLD, req);
}
static int dn_ibarrier(MPI_Request *req) { return MPI_Ibarrier(MPI_COMM_WORLD, req); }
static int dn_test(MPI_Request *req, int *done) { return MPI_Test(req, done, MPI_STATUS_IGNORE); }
static int dn_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }
static int dn_finalize(void) { return MPI_Finalize(); }
static int dn_error_string(int rc, char *s) {
	int n = 0;
	MPI_Error_string(rc, s, &n);
	return n;
}
static int dn_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
*/
import "C"

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/densessm/densessm/distributed"
)

// Comm is this process's place in MPI_COMM_WORLD. Its collective calls
// are nonblocking MPI calls (MPI_Iallreduce, MPI_Ibarrier) polled with
// MPI_Test: for a millisecond without pause (the latency of a step's
// all-reduce), then with sleeps of up to 2 ms, so that ranks waiting for
// another (rank 0 tokenizing the corpus or measuring the validation loss)
// leave it the CPU, and a cancelled context abandons the wait (the Comm is
// then broken: see distributed.Comm).
type Comm struct {
	mu          sync.Mutex
	rank, size  int
	local       int
	bufs        []cbuf
	f64         *C.double
	f64n        int
	broken      bool
	finalized   bool
	useBlocking bool
}

// cbuf is C memory handed out by Buffer.
type cbuf struct {
	p unsafe.Pointer
	n int // float32s
}

var _ distributed.Comm = (*Comm)(nil)

var (
	initOnce sync.Once
	world    *Comm
	initErr  error
)

// Init initialises MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED: the calls
// come from any goroutine's thread, one at a time) once per process and
// returns this process's Comm.
//
// Open MPI catches SIGSEGV, SIGBUS, SIGILL and SIGFPE to print a stack of
// its own, with handlers that do not run on Go's signal stacks; unless
// OMPI_MCA_opal_signal is set, Init turns that off, so that Go's runtime
// keeps handling those signals (a nil dereference stays a Go panic).
func Init() (*Comm, error) {
	initOnce.Do(func() {
		if _, ok := os.LookupEnv("OMPI_MCA_opal_signal"); !ok {
			os.Setenv("OMPI_MCA_opal_signal", "")
		}
		var provided C.int
		if rc := C.dn_init(&provided); rc != C.MPI_SUCCESS {
			initErr = mpiError("MPI_Init_thread", rc)
			return
		}
		if provided < C.MPI_THREAD_SERIALIZED {
			C.dn_finalize()
			initErr = fmt.Errorf("mpi: the MPI library gives thread level %d, below MPI_THREAD_SERIALIZED (%d): calls from Go come from any thread", int(provided), int(C.MPI_THREAD_SERIALIZED))
			return
		}
		var rank, size, local C.int
		if rc := C.dn_world(&rank, &size); rc != C.MPI_SUCCESS {
			initErr = mpiError("MPI_Comm_rank", rc)
			return
		}
		if rc := C.dn_local_rank(&local); rc != C.MPI_SUCCESS {
			initErr = mpiError("MPI_Comm_split_type", rc)
			return
		}
		world = &Comm{rank: int(rank), size: int(size), local: int(local), useBlocking: os.Getenv("DENSESSM_MPI_BLOCKING") == "1"}
		world.f64n = 64
		world.f64 = (*C.double)(C.malloc(C.size_t(8 * world.f64n)))
	})
	return world, initErr
}

// Rank returns the process's rank in MPI_COMM_WORLD.
func (c *Comm) Rank() int { return c.rank }

// Size returns the number of processes of MPI_COMM_WORLD.
func (c *Comm) Size() int { return c.size }

// LocalRank returns the process's rank among those of its node
// (MPI_COMM_TYPE_SHARED).
func (c *Comm) LocalRank() int { return c.local }

// Buffer implements distributed.Comm: n float32s of C memory, freed by
// Finalize.
func (c *Comm) Buffer(n int) []float32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := C.calloc(C.size_t(max(n, 1)), 4)
	if p == nil {
		panic(fmt.Sprintf("mpi: no memory for a buffer of %d float32s", n))
	}
	c.bufs = append(c.bufs, cbuf{p: p, n: n})
	return unsafe.Slice((*float32)(p), n)
}

// owned reports whether buf lies in a buffer of Buffer.
func (c *Comm) owned(buf []float32) bool {
	a := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	for _, b := range c.bufs {
		lo := uintptr(b.p)
		if a >= lo && a+4*uintptr(len(buf)) <= lo+4*uintptr(b.n) {
			return true
		}
	}
	return false
}

// AllreduceFloat32 implements distributed.Comm (MPI_Iallreduce,
// MPI_FLOAT, MPI_SUM, in place; with DENSESSM_MPI_BLOCKING=1, the blocking
// MPI_Allreduce).
func (c *Comm) AllreduceFloat32(ctx context.Context, buf []float32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return err
	}
	if len(buf) == 0 {
		return nil
	}
	if !c.owned(buf) {
		return fmt.Errorf("mpi: AllreduceFloat32 of memory that Buffer did not give")
	}
	p := (*C.float)(unsafe.Pointer(unsafe.SliceData(buf)))
	for len(buf) > 0 {
		n := min(len(buf), 1<<30)
		if c.useBlocking {
			if rc := C.dn_allreduce_f32(p, C.int(n)); rc != C.MPI_SUCCESS {
				return mpiError("MPI_Allreduce", rc)
			}
		} else {
			var req C.MPI_Request
			if rc := C.dn_iallreduce_f32(p, C.int(n), &req); rc != C.MPI_SUCCESS {
				return mpiError("MPI_Iallreduce", rc)
			}
			if err := c.wait(ctx, &req); err != nil {
				return err
			}
		}
		buf = buf[n:]
		p = (*C.float)(unsafe.Add(unsafe.Pointer(p), 4*n))
	}
	return nil
}

// AllreduceFloat64 implements distributed.Comm.
func (c *Comm) AllreduceFloat64(ctx context.Context, buf []float64, op distributed.Op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return err
	}
	if len(buf) > c.f64n {
		C.free(unsafe.Pointer(c.f64))
		c.f64n = len(buf)
		c.f64 = (*C.double)(C.malloc(C.size_t(8 * c.f64n)))
	}
	if len(buf) == 0 {
		return nil
	}
	cb := unsafe.Slice((*float64)(unsafe.Pointer(c.f64)), len(buf))
	copy(cb, buf)
	var req C.MPI_Request
	if rc := C.dn_iallreduce_f64(c.f64, C.int(len(buf)), C.int(op), &req); rc != C.MPI_SUCCESS {
		return mpiError("MPI_Iallreduce", rc)
	}
	if err := c.wait(ctx, &req); err != nil {
		return err
	}
	copy(buf, cb)
	return nil
}

// Barrier implements distributed.Comm (MPI_Ibarrier).
func (c *Comm) Barrier(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return err
	}
	var req C.MPI_Request
	if rc := C.dn_ibarrier(&req); rc != C.MPI_SUCCESS {
		return mpiError("MPI_Ibarrier", rc)
	}
	return c.wait(ctx, &req)
}

// spin is how long wait polls without sleeping.
const spin = time.Millisecond

// wait polls req until it completes or ctx ends.
func (c *Comm) wait(ctx context.Context, req *C.MPI_Request) error {
	start := time.Now()
	pause := 20 * time.Microsecond
	for i := 0; ; i++ {
		var done C.int
		if rc := C.dn_test(req, &done); rc != C.MPI_SUCCESS {
			return mpiError("MPI_Test", rc)
		}
		if done != 0 {
			return nil
		}
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				c.broken = true // the request stays in flight: its memory is never freed
				return err
			}
		}
		if time.Since(start) < spin {
			continue
		}
		time.Sleep(pause)
		pause = min(2*pause, 2*time.Millisecond)
	}
}

func (c *Comm) usable() error {
	switch {
	case c.finalized:
		return fmt.Errorf("mpi: call after Finalize")
	case c.broken:
		return distributed.ErrBroken
	}
	return nil
}

// Abort ends every process of the job (MPI_Abort on MPI_COMM_WORLD with
// code); the launcher reports the rank that called it.
func (c *Comm) Abort(code int) {
	C.dn_abort(C.int(code))
	os.Exit(code) // MPI_Abort does not return
}

// Finalize ends MPI in this process (MPI_Finalize). A Comm that a
// cancelled call broke must not finalize: the other ranks may never join.
func (c *Comm) Finalize() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return err
	}
	c.finalized = true
	if rc := C.dn_finalize(); rc != C.MPI_SUCCESS {
		return mpiError("MPI_Finalize", rc)
	}
	for _, b := range c.bufs {
		C.free(b.p)
	}
	c.bufs = nil
	C.free(unsafe.Pointer(c.f64))
	return nil
}

// mpiError returns the error of an MPI call's return code.
func mpiError(call string, rc C.int) error {
	s := make([]byte, int(C.dn_max_error_string())+1)
	n := C.dn_error_string(rc, (*C.char)(unsafe.Pointer(&s[0])))
	return fmt.Errorf("mpi: %s: %s (code %d)", call, string(s[:int(n)]), int(rc))
}
