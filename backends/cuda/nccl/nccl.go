// Package nccl binds NCCL (libnccl.so.2), loaded at run time with purego
// like the rest of backends/cuda: the package builds with CGO_ENABLED=0,
// and a machine without NCCL gets a *driver.LoadError wrapping
// api.ErrUnsupported that lists every path tried.
//
// It gives what data-parallel training on GPUs needs: a unique id made by
// one rank and shared by the others (ShareUniqueID sends it over the
// distributed.Comm the run already has, MPI's), a communicator per rank
// (InitRank), and float32 sums of device buffers queued on a CUDA stream
// (Comm.AllReduceSumF32), several fused in one NCCL group. The gradients
// stay on the device: the CUDA backend's reducer (not written yet) will
// hand its device buckets to a DeviceComm, where distributed.GradReducer
// hands host buckets to a distributed.Comm (docs/distributed.md, "NCCL").
//
// NCCL works on the CUDA device current on the calling OS thread: make
// the device's primary context current (driver.SetCurrent) on a thread
// locked with runtime.LockOSThread before InitRank and every collective.
package nccl

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
)

// Result is an ncclResult_t.
type Result int32

// The results (nccl.h).
const (
	Success            Result = 0
	UnhandledCudaError Result = 1
	SystemError        Result = 2
	InternalError      Result = 3
	InvalidArgument    Result = 4
	InvalidUsage       Result = 5
	RemoteError        Result = 6
	InProgress         Result = 7
	Timeout            Result = 8
)

// The ncclDataType_t and ncclRedOp_t this package uses.
const (
	typeFloat32 = 7
	opSum       = 0
)

// UniqueIDBytes is NCCL_UNIQUE_ID_BYTES: the size of the id every rank
// passes to InitRank.
const UniqueIDBytes = 128

// UniqueID is an ncclUniqueId: made by one rank (GetUniqueID) and given
// to all (ShareUniqueID). It names the bootstrap root (an address and
// port of the rank that made it), so it is good for one communicator.
type UniqueID [UniqueIDBytes]byte

// uniqueID is the C struct, passed by value to ncclCommInitRank (purego
// copies it onto the stack on amd64, through a pointer to a copy on
// arm64, as the C ABIs say for a 128-byte struct).
type uniqueID struct{ Internal [UniqueIDBytes]byte }

// NCCL is libnccl, every function resolved once when it is loaded.
type NCCL struct {
	Path    string // the library that was loaded
	Version int    // ncclGetVersion: 10000*major + 100*minor + patch, e.g. 23206

	ncclGetVersion        func(v *int32) Result
	ncclGetErrorString    func(r Result) string
	ncclGetLastError      func(comm uintptr) string // optional (NCCL 2.13+)
	ncclGetUniqueId       func(id *uniqueID) Result
	ncclCommInitRank      func(comm *uintptr, nranks int32, id uniqueID, rank int32) Result
	ncclCommDestroy       func(comm uintptr) Result
	ncclCommAbort         func(comm uintptr) Result
	ncclCommGetAsyncError func(comm uintptr, r *Result) Result
	ncclAllReduce         func(send, recv driver.DevicePtr, count uintptr, dtype, op int32, comm uintptr, s driver.Stream) Result
	ncclGroupStart        func() Result
	ncclGroupEnd          func() Result
}

// Load loads libnccl.so.2, once per process (the result, success or
// error, is kept). It needs no GPU: NCCL links the CUDA runtime
// statically and reaches the driver only when a communicator is made.
// Where there is no NCCL the error is a *driver.LoadError ("no NCCL
// library found (looked for ...)") wrapping api.ErrUnsupported.
func Load() (*NCCL, error) {
	return once()
}

var once = sync.OnceValues(func() (*NCCL, error) { return load(candidates()) })

func load(cands []string) (*NCCL, error) {
	lib, err := driver.OpenFirst("NCCL library", cands)
	if err != nil {
		return nil, err
	}
	n := &NCCL{Path: lib.Path}
	if err := lib.Bind([]driver.Binding{
		{Name: "ncclGetVersion", Fptr: &n.ncclGetVersion},
		{Name: "ncclGetErrorString", Fptr: &n.ncclGetErrorString},
		{Name: "ncclGetLastError", Fptr: &n.ncclGetLastError, Optional: true},
		{Name: "ncclGetUniqueId", Fptr: &n.ncclGetUniqueId},
		{Name: "ncclCommInitRank", Fptr: &n.ncclCommInitRank},
		{Name: "ncclCommDestroy", Fptr: &n.ncclCommDestroy},
		{Name: "ncclCommAbort", Fptr: &n.ncclCommAbort},
		{Name: "ncclCommGetAsyncError", Fptr: &n.ncclCommGetAsyncError},
		{Name: "ncclAllReduce", Fptr: &n.ncclAllReduce},
		{Name: "ncclGroupStart", Fptr: &n.ncclGroupStart},
		{Name: "ncclGroupEnd", Fptr: &n.ncclGroupEnd},
	}); err != nil {
		return nil, err
	}
	var v int32
	if err := n.check("ncclGetVersion", n.ncclGetVersion(&v), 0); err != nil {
		return nil, err
	}
	n.Version = int(v)
	if n.Version < 20000 {
		return nil, fmt.Errorf("%w: %s is NCCL %s; NCCL 2 is needed", api.ErrUnsupported, n.Path, n.VersionString())
	}
	return n, nil
}

// VersionString is Version as major.minor.patch ("2.32.6"). NCCL up to
// 2.8 coded its versions as 1000*major + 100*minor + patch.
func (n *NCCL) VersionString() string {
	v := n.Version
	if v < 2900 {
		return fmt.Sprintf("%d.%d.%d", v/1000, v%1000/100, v%100)
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v%10000/100, v%100)
}

// Error is a failed NCCL call: which call, its ncclResult_t, NCCL's
// sentence for it and, when a communicator was involved and the library
// has ncclGetLastError, NCCL's last message.
type Error struct {
	Call   string
	Code   Result
	Msg    string // ncclGetErrorString
	Detail string // ncclGetLastError; may be empty
}

func (e *Error) Error() string {
	s := fmt.Sprintf("nccl: %s: %s (%d)", e.Call, e.Msg, int32(e.Code))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// check turns a result into nil or an *Error.
func (n *NCCL) check(call string, r Result, comm uintptr) error {
	if r == Success {
		return nil
	}
	e := &Error{Call: call, Code: r, Msg: n.ncclGetErrorString(r)}
	if n.ncclGetLastError != nil {
		e.Detail = n.ncclGetLastError(comm)
	}
	return e
}

// GetUniqueID makes the id of a new communicator: one rank calls it and
// every rank passes the same id to InitRank. It opens NCCL's bootstrap
// listener on this host (NCCL_SOCKET_IFNAME picks the interface).
func (n *NCCL) GetUniqueID() (UniqueID, error) {
	var id uniqueID
	err := n.check("ncclGetUniqueId", n.ncclGetUniqueId(&id), 0)
	return UniqueID(id.Internal), err
}

// GroupStart opens a group: the collectives queued until GroupEnd are
// launched together (one kernel for several all-reduces, and no deadlock
// where one thread drives several communicators).
func (n *NCCL) GroupStart() error { return n.check("ncclGroupStart", n.ncclGroupStart(), 0) }

// GroupEnd closes what GroupStart opened and launches its collectives.
func (n *NCCL) GroupEnd() error { return n.check("ncclGroupEnd", n.ncclGroupEnd(), 0) }

// Comm is an NCCL communicator: this process's rank among size, on the
// device that was current when InitRank made it. It is not safe for
// concurrent use, except that Abort may be called from another goroutine
// while a call is blocked in NCCL (what NCCL's abort is for); no call may
// begin once Abort has been called.
type Comm struct {
	n          *NCCL
	h          atomic.Uintptr // ncclComm_t; 0 once destroyed or aborted
	rank, size int
}

// DeviceComm is what a reducer of device buffers needs of a communicator:
// *Comm implements it, and a fake can in the tests of the CUDA backend's
// reducer, which have no GPU.
type DeviceComm interface {
	Rank() int
	Size() int
	// AllReduceSumF32 queues, on stream s, the sum over the ranks of each
	// buffer; it returns once they are queued, not done.
	AllReduceSumF32(s driver.Stream, bufs ...Buffer) error
	// AsyncError is nil while the communicator is healthy, else the error
	// that broke it (a rank that died, a network failure).
	AsyncError() error
	// Abort frees the communicator, ending what it has queued or is
	// blocked in; it may be called from another goroutine.
	Abort() error
}

var _ DeviceComm = (*Comm)(nil)

// errClosed is the error of a call on a destroyed or aborted Comm.
var errClosed = fmt.Errorf("nccl: the communicator was destroyed or aborted: %w", api.ErrConfig)

// InitRank makes this process's communicator, rank of size, from the id
// every rank got from the same GetUniqueID. It blocks until all size
// ranks have called it (NCCL's own timeout applies; Abort cannot reach a
// communicator not yet returned). The current device is the one used:
// two ranks on one device is an error of NCCL's.
func (n *NCCL) InitRank(size, rank int, id UniqueID) (*Comm, error) {
	if size < 1 || rank < 0 || rank >= size || int64(size) != int64(int32(size)) {
		return nil, fmt.Errorf("nccl: rank %d of %d: %w", rank, size, api.ErrOutOfRange)
	}
	var h uintptr
	if err := n.check("ncclCommInitRank", n.ncclCommInitRank(&h, int32(size), uniqueID{id}, int32(rank)), 0); err != nil {
		return nil, err
	}
	c := &Comm{n: n, rank: rank, size: size}
	c.h.Store(h)
	return c, nil
}

// Rank is this process's rank in the communicator.
func (c *Comm) Rank() int { return c.rank }

// Size is the number of ranks.
func (c *Comm) Size() int { return c.size }

// Buffer is count float32s of device memory: Send is read and Recv
// written, and Send == Recv sums in place (what a gradient bucket does).
type Buffer struct {
	Send, Recv driver.DevicePtr
	Count      int
}

// AllReduceSumF32 queues on stream s, for each buffer, the element-wise
// float32 sum over the ranks of Send into Recv; every rank gets the same
// bits. Several buffers go in one NCCL group. It returns once the work is
// queued: the sums are done when s has reached this point (an event
// recorded after it), and a failure of another rank shows in AsyncError,
// not here. Every rank must make the same calls with the same counts.
func (c *Comm) AllReduceSumF32(s driver.Stream, bufs ...Buffer) (err error) {
	h := c.h.Load()
	if h == 0 {
		return errClosed
	}
	for _, b := range bufs {
		if b.Count < 0 {
			return fmt.Errorf("nccl: all-reduce of %d values: %w", b.Count, api.ErrOutOfRange)
		}
	}
	if len(bufs) > 1 {
		if err := c.n.GroupStart(); err != nil {
			return err
		}
		defer func() {
			// The group is closed even after a failed call, or the next
			// group would nest in it.
			if e := c.n.GroupEnd(); err == nil {
				err = e
			}
		}()
	}
	for _, b := range bufs {
		if err := c.n.check("ncclAllReduce", c.n.ncclAllReduce(b.Send, b.Recv, uintptr(b.Count), typeFloat32, opSum, h, s), h); err != nil {
			return err
		}
	}
	return nil
}

// AsyncError returns nil while the communicator is healthy, else the
// *Error of what broke it (ncclCommGetAsyncError). A waiter polls it with
// the stream, as the MPI Comm polls MPI_Test, and calls Abort on an error
// or a cancelled context.
func (c *Comm) AsyncError() error {
	h := c.h.Load()
	if h == 0 {
		return errClosed
	}
	var r Result
	if err := c.n.check("ncclCommGetAsyncError", c.n.ncclCommGetAsyncError(h, &r), h); err != nil {
		return err
	}
	if r == Success || r == InProgress {
		return nil
	}
	return c.n.check("ncclCommGetAsyncError (the communicator's error)", r, h)
}

// Destroy frees the communicator once its queued work is done (every
// rank destroys its own). A second Destroy, or one after Abort, does
// nothing.
func (c *Comm) Destroy() error {
	h := c.h.Swap(0)
	if h == 0 {
		return nil
	}
	return c.n.check("ncclCommDestroy", c.n.ncclCommDestroy(h), 0)
}

// Abort frees the communicator at once, ending the operations it has
// queued or is blocked in (the other ranks' then fail with an error).
func (c *Comm) Abort() error {
	h := c.h.Swap(0)
	if h == 0 {
		return nil
	}
	return c.n.check("ncclCommAbort", c.n.ncclCommAbort(h), 0)
}
