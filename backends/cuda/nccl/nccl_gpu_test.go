package nccl

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/densessm/densessm/backends/cuda/driver"
)

// TestGPUAllReduce runs the communicator on every device of the machine
// (up to 8), one rank per device, each on its own locked OS thread in
// this process: in-place and out-of-place sums, several buffers in one
// group, checked exactly (small integers sum exactly in float32 in any
// order), then 64 MiB timed. It needs a CUDA driver with a device and
// NCCL; without them it skips, saying which is missing. Written without
// a GPU: it has not run yet. A rank that fails before InitRank leaves
// the others waiting in it until go test's timeout.
func TestGPUAllReduce(t *testing.T) {
	d, err := driver.LoadDriver()
	if err != nil {
		t.Skipf("no CUDA driver: %v", err)
	}
	devices, err := d.DeviceCount()
	if err != nil || devices == 0 {
		t.Skipf("no CUDA device (%v)", err)
	}
	n, err := Load()
	if err != nil {
		t.Skipf("no NCCL: %v", err)
	}
	k := min(devices, 8)
	t.Logf("NCCL %s from %s; %d ranks on %d devices", n.VersionString(), n.Path, k, devices)
	id, err := n.GetUniqueID()
	if err != nil {
		t.Fatal(err)
	}
	const count = 1000
	big := 16 << 20 // floats: 64 MiB
	errs := make([]error, k)
	times := make([]time.Duration, k)
	var wg sync.WaitGroup
	for r := range k {
		wg.Go(func() { times[r], errs[r] = gpuRank(d, n, id, r, k, count, big) })
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
	if !t.Failed() {
		t.Logf("all-reduce of %d MiB on %d ranks: %v (%.1f GB/s bus bandwidth)", 4*big>>20, k, times[0],
			2*float64(k-1)/float64(k)*float64(4*big)/times[0].Seconds()/1e9)
	}
}

// gpuRank is one rank of TestGPUAllReduce, on device r.
func gpuRank(d *driver.Driver, n *NCCL, id UniqueID, r, k, count, big int) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dev, err := d.DeviceGet(r)
	if err != nil {
		return 0, err
	}
	ctx, err := d.PrimaryContext(dev)
	if err != nil {
		return 0, err
	}
	defer d.ReleasePrimaryContext(dev)
	if err := d.SetCurrent(ctx); err != nil {
		return 0, err
	}
	s, err := d.StreamCreate(driver.StreamNonBlocking)
	if err != nil {
		return 0, err
	}
	defer d.StreamDestroy(s)
	var ptrs []driver.DevicePtr
	defer func() {
		for _, p := range ptrs {
			d.MemFree(p)
		}
	}()
	alloc := func(floats int) (driver.DevicePtr, error) {
		p, err := d.MemAlloc(uint64(4 * floats))
		if err == nil {
			ptrs = append(ptrs, p)
		}
		return p, err
	}
	// a[i] = (r+1)*i, b[i] = r - i: sums k(k+1)/2*i and k(k-1)/2 - k*i.
	a, b := make([]float32, count), make([]float32, count)
	for i := range count {
		a[i], b[i] = float32((r+1)*i), float32(r-i)
	}
	da, err := alloc(count)
	if err != nil {
		return 0, err
	}
	db, err := alloc(count)
	if err != nil {
		return 0, err
	}
	dout, err := alloc(count)
	if err != nil {
		return 0, err
	}
	if err := d.CopyHtoD(da, f32Bytes(a)); err != nil {
		return 0, err
	}
	if err := d.CopyHtoD(db, f32Bytes(b)); err != nil {
		return 0, err
	}
	c, err := n.InitRank(k, r, id)
	if err != nil {
		return 0, err
	}
	defer c.Destroy()
	// One buffer in place, then two in one group: b out of place into
	// out, and a in place again.
	if err := c.AllReduceSumF32(s, Buffer{Send: da, Recv: da, Count: count}); err != nil {
		return 0, err
	}
	if err := c.AllReduceSumF32(s, Buffer{Send: db, Recv: dout, Count: count}, Buffer{Send: da, Recv: da, Count: count}); err != nil {
		return 0, err
	}
	if err := d.StreamSynchronize(s); err != nil {
		return 0, err
	}
	if err := c.AsyncError(); err != nil {
		return 0, err
	}
	raw := make([]byte, 4*count)
	if err := d.CopyDtoH(raw, da); err != nil {
		return 0, err
	}
	tri := k * (k + 1) / 2
	for i := range count {
		// a summed twice: k*tri*i.
		if got, want := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])), float32(k*tri*i); got != want {
			return 0, fmt.Errorf("a[%d] = %g, want %g", i, got, want)
		}
	}
	if err := d.CopyDtoH(raw, dout); err != nil {
		return 0, err
	}
	for i := range count {
		if got, want := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])), float32(k*(k-1)/2-k*i); got != want {
			return 0, fmt.Errorf("out[%d] = %g, want %g", i, got, want)
		}
	}
	// 64 MiB in place, timed after one warm-up.
	dbig, err := alloc(big)
	if err != nil {
		return 0, err
	}
	if err := d.FillD32Async(dbig, math.Float32bits(1), uint64(big), s); err != nil {
		return 0, err
	}
	var took time.Duration
	for range 2 {
		start := time.Now()
		if err := c.AllReduceSumF32(s, Buffer{Send: dbig, Recv: dbig, Count: big}); err != nil {
			return 0, err
		}
		if err := d.StreamSynchronize(s); err != nil {
			return 0, err
		}
		took = time.Since(start)
	}
	if err := d.CopyDtoH(raw[:4], dbig+driver.DevicePtr(4*(big-1))); err != nil {
		return 0, err
	}
	if got, want := math.Float32frombits(binary.LittleEndian.Uint32(raw)), float32(k*k); got != want {
		return 0, fmt.Errorf("64 MiB: last value %g, want %g", got, want)
	}
	return took, c.AsyncError()
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}
