//go:build linux && (amd64 || arm64)

package cuda

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// emuDevice is the fake device with its kernels run by the CUDA emulator
// (emu_build_test.go) instead of the Go models: the kernels' own CUDA C on
// the CPU. Copies, fills and cuBLAS's GEMM are the fake device's. Every
// allocation is its own mapping, filled with 0xff bytes (a NaN as float
// and as double) and placed to end at a guard page, with a guard page
// before it: a kernel reading or writing past the end of a buffer faults,
// and the launch fails naming the kernel, the thread, the allocation and
// the line. The bytes between the guard page before and the allocation's
// start are checked after each launch for writes before the start.
//
// The allocator hands out blocks of a size class, larger than the tensor;
// so that the guard page follows the tensor's last byte, Backend.Alloc
// tells the device each new tensor's size (tensorSizer), and the block is
// shrunk to it, moving its start (the bytes are being zeroed anyway).
type emuDevice struct {
	*fakeDevice
	lib   *emuLib
	mu    sync.Mutex                  // a launch at a time, and no mapping changes during one
	maps  map[driver.DevicePtr][]byte // each allocation's whole mapping, guard pages included
	sizes map[driver.DevicePtr]int64  // each allocation's size
	notes map[string]bool             // the runtime's notes: barriers passed with threads returned
}

// emuPoison fills new allocations and shared memory: as float or double,
// a NaN.
const emuPoison = 0xff

func newEmuDevice(lib *emuLib, total int64) *emuDevice {
	return &emuDevice{fakeDevice: newFakeDevice(total), lib: lib, maps: map[driver.DevicePtr][]byte{}, sizes: map[driver.DevicePtr]int64{}, notes: map[string]bool{}}
}

// newEmu returns a backend on the emulated device with the host fallback,
// skipping the test where the emulator cannot be built (no g++) unless
// DENSESSM_REQUIRE_EMU=1.
func newEmu(t testing.TB, opts Options) (*Backend, *emuDevice) {
	t.Helper()
	lib := loadEmu(t, kernels.Sources(), kernels.Headers())
	if opts.Threads == 0 {
		opts.Threads = 2
	}
	opts.HostFallback = true
	dev := newEmuDevice(lib, cmp(opts.FakeMemory, 1<<30))
	b, err := newBackend(dev, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		for _, n := range dev.noted() {
			t.Logf("emulator note: %s", n)
		}
	})
	return b, dev
}

func (e *emuDevice) describe() string {
	return fmt.Sprintf("emulated CUDA device (the kernels' CUDA C on the CPU, %d MiB)", e.total>>20)
}

func (e *emuDevice) alloc(n int64) (driver.DevicePtr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.fakeDevice
	f.mu.Lock()
	defer f.mu.Unlock()
	if n <= 0 || f.used+n > f.total {
		return 0, &driver.Error{Call: "cuMemAlloc_v2", Code: driver.ErrorOutOfMemory, Name: "CUDA_ERROR_OUT_OF_MEMORY", Msg: "out of memory (emulated device)"}
	}
	page := int64(os.Getpagesize())
	data := (n + page - 1) / page * page
	m, err := syscall.Mmap(-1, 0, int(data+2*page), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return 0, fmt.Errorf("emulated device: mapping %d bytes: %w", n, err)
	}
	if err := errors.Join(syscall.Mprotect(m[:page], syscall.PROT_NONE), syscall.Mprotect(m[page+data:], syscall.PROT_NONE)); err != nil {
		syscall.Munmap(m)
		return 0, fmt.Errorf("emulated device: guard pages: %w", err)
	}
	body := m[page : page+data]
	for i := range body {
		body[i] = emuPoison
	}
	p := f.next
	f.next += driver.DevicePtr((n+255)/256*256 + 256) // a gap: no address is one past the end of two allocations
	f.mem[p] = body[data-n : data : data]
	i, _ := slices.BinarySearch(f.bases, p)
	f.bases = slices.Insert(f.bases, i, p)
	f.used += n
	e.maps[p], e.sizes[p] = m, n
	return p, nil
}

// tensorAt moves the block at p so that a new tensor of n bytes (n
// rounded up to whole words, which fill32 writes) ends at the guard page
// after it, the bytes before it poisoned.
func (e *emuDevice) tensorAt(p driver.DevicePtr, n int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.fakeDevice
	f.mu.Lock()
	defer f.mu.Unlock()
	n = (n + 3) / 4 * 4
	if m, ok := e.maps[p]; ok && n <= e.sizes[p] {
		page := os.Getpagesize()
		body := m[page : len(m)-page]
		start := len(body) - int(n)
		for i := range body[:start] {
			body[i] = emuPoison
		}
		f.mem[p] = body[start:len(body):len(body)]
	}
}

func (e *emuDevice) free(p driver.DevicePtr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.fakeDevice
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := e.maps[p]
	if !ok {
		return fmt.Errorf("emulated device: free of %#x, which is not an allocation", uint64(p))
	}
	f.used -= e.sizes[p]
	delete(f.mem, p)
	delete(e.maps, p)
	delete(e.sizes, p)
	i, _ := slices.BinarySearch(f.bases, p)
	f.bases = slices.Delete(f.bases, i, i+1)
	return syscall.Munmap(m)
}

func (e *emuDevice) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for p, m := range e.maps {
		syscall.Munmap(m)
		delete(e.maps, p)
		delete(e.fakeDevice.mem, p)
	}
	e.fakeDevice.bases = nil
	return nil
}

// noted returns the runtime's notes so far, sorted.
func (e *emuDevice) noted() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for n := range e.notes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// host returns the host address of device address p (0 for 0) and the
// allocation holding it; p may be one past an allocation's end.
func (e *emuDevice) host(p driver.DevicePtr) (uintptr, driver.DevicePtr, error) {
	if p == 0 {
		return 0, 0, nil
	}
	f := e.fakeDevice
	f.mu.Lock()
	defer f.mu.Unlock()
	i, _ := slices.BinarySearch(f.bases, p+1)
	if i--; i >= 0 {
		base := f.bases[i]
		if m := f.mem[base]; p-base <= driver.DevicePtr(len(m)) {
			return uintptr(unsafe.Pointer(unsafe.SliceData(m))) + uintptr(p-base), base, nil
		}
	}
	return 0, 0, fmt.Errorf("address %#x is not in an allocation", uint64(p))
}

// launch runs a kernel's CUDA C in the emulator.
func (e *emuDevice) launch(kernel string, g kernels.Geometry, args ...any) error {
	if err := checkLaunch(kernel, args); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.count(kernel)
	vals := make([][]uint64, len(args))
	ptrs := make([]uintptr, len(args)+1)
	sizes := make([]uint64, len(args)+1)
	bases := make([]driver.DevicePtr, len(args)) // the allocation each pointer argument points into
	for i, a := range args {
		var w []uint64
		switch v := a.(type) {
		case driver.DevicePtr:
			h, base, err := e.host(v)
			if err != nil {
				return fmt.Errorf("emulated device: %s argument %d: %w", kernel, i, err)
			}
			w, sizes[i], bases[i] = []uint64{uint64(h)}, 8, base
		case int32:
			w, sizes[i] = []uint64{uint64(uint32(v))}, 4
		case int64:
			w, sizes[i] = []uint64{uint64(v)}, 8
		case uint64:
			w, sizes[i] = []uint64{v}, 8
		case float32:
			w, sizes[i] = []uint64{uint64(*(*uint32)(unsafe.Pointer(&v)))}, 4
		case float64:
			w, sizes[i] = []uint64{*(*uint64)(unsafe.Pointer(&v))}, 8
		case driver.Bytes:
			w, sizes[i] = make([]uint64, (len(v)+7)/8+1), uint64(len(v)) // 8-byte aligned
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), 8*len(w)), v)
		}
		vals[i] = w
		ptrs[i] = uintptr(unsafe.Pointer(&w[0]))
	}
	grid := []uint32{g.Grid.X, g.Grid.Y, g.Grid.Z}
	block := []uint32{g.Block.X, g.Block.Y, g.Block.Z}
	msg := make([]byte, 4096)
	fault := make([]uint64, 3)
	rc := e.lib.launch(kernel, &grid[0], &block[0], g.Shared, &ptrs[0], &sizes[0], int32(len(args)), &msg[0], int32(len(msg)), &fault[0])
	runtime.KeepAlive(vals)
	text := string(msg[:bytes.IndexByte(msg, 0)])
	switch rc {
	case 0:
	case 1:
		e.notes[text] = true
	case -2:
		return fmt.Errorf("emulated device: %s%s%s", text, e.faultPlace(kernel, uintptr(fault[1]), args, bases), e.line(fault[2]))
	default:
		return fmt.Errorf("emulated device: %s", text)
	}
	return e.checkHeads(kernel, args, bases)
}

// faultPlace says which allocation (and which arguments point into it) a
// faulting address is next to.
func (e *emuDevice) faultPlace(kernel string, addr uintptr, args []any, bases []driver.DevicePtr) string {
	for p, m := range e.maps {
		lo, hi := uintptr(unsafe.Pointer(unsafe.SliceData(m))), uintptr(unsafe.Pointer(unsafe.SliceData(m)))+uintptr(len(m))
		if addr < lo || addr >= hi {
			continue
		}
		data := e.fakeDevice.mem[p]
		start := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
		end := start + uintptr(len(data))
		var s string
		if addr >= end {
			s = fmt.Sprintf(": %d bytes past the end of the %d-byte allocation at %#x", addr-end, len(data), uint64(p))
		} else {
			s = fmt.Sprintf(": %d bytes before the start of the %d-byte allocation at %#x", start-addr, len(data), uint64(p))
		}
		return s + e.argsInto(kernel, p, args, bases)
	}
	return ""
}

// argsInto names the arguments that point into the allocation at base.
func (e *emuDevice) argsInto(kernel string, base driver.DevicePtr, args []any, bases []driver.DevicePtr) string {
	params := e.lib.params[kernel]
	var names []string
	for i := range args {
		if bases[i] == base && base != 0 {
			at := args[i].(driver.DevicePtr) - base
			name := fmt.Sprintf("argument %d", i)
			if i < len(params) {
				name += " " + params[i].name
			}
			names = append(names, fmt.Sprintf("%s (at offset %d)", name, at))
		}
	}
	if len(names) == 0 {
		return ""
	}
	return ", which " + strings.Join(names, " and ") + " points into"
}

// line names the source line of a faulting instruction (its offset in the
// library) through addr2line, where there is one.
func (e *emuDevice) line(off uint64) string {
	if off == 0 {
		return ""
	}
	out, err := exec.Command("addr2line", "-f", "-i", "-C", "-e", e.lib.path, fmt.Sprintf("%#x", off)).Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i := range f {
		f[i] = filepath.Base(f[i]) // the build directory is not where the library ended up
	}
	return "; at " + strings.Join(f, " ")
}

// checkHeads checks that a launch left the bytes before each of its
// pointer arguments' allocations as they were (emuPoison).
func (e *emuDevice) checkHeads(kernel string, args []any, bases []driver.DevicePtr) error {
	page := os.Getpagesize()
	for i := range args {
		if bases[i] == 0 {
			continue
		}
		m, data := e.maps[bases[i]], e.fakeDevice.mem[bases[i]]
		head := m[page : len(m)-page-len(data)]
		for j := range head { // the first changed byte is the farthest from the start
			if head[j] != emuPoison {
				return fmt.Errorf("emulated device: %s wrote %d bytes before the start of the %d-byte allocation at %#x%s",
					kernel, len(head)-j, len(data), uint64(bases[i]), e.argsInto(kernel, bases[i], args, bases))
			}
		}
	}
	return nil
}

// Check that the emulated device is a device.
var _ device = (*emuDevice)(nil)
