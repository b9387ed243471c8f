//go:build linux && (amd64 || arm64)

package cuda

import (
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/backendtest"
	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// emuTestSource holds kernels that check the emulator itself.
const emuTestSource = `#include "common.cuh"

// Threads below half wait at one barrier, the others at another.
extern "C" __global__ void t_divergent_sync(float* out) {
	if (threadIdx.x < blockDim.x / 2) {
		__syncthreads();
		out[threadIdx.x] = 1.0f;
	} else {
		__syncthreads();
		out[threadIdx.x] = 2.0f;
	}
}

// Writes one element past n.
extern "C" __global__ void t_overrun(float* out, int n) {
	DS_FOR_EACH(i, (long long)n + 1) out[i] = 1.0f;
}

// Writes one element before out.
extern "C" __global__ void t_underrun(float* out) {
	if (threadIdx.x == 0) out[-1] = 1.0f;
}

// Each block's sum of x by ds_block_sum (warp shuffles and barriers).
extern "C" __global__ void t_block_sum(double* out, const float* x) {
	const double s = ds_block_sum((double)x[blockIdx.x * blockDim.x + threadIdx.x]);
	if (threadIdx.x == 0) out[blockIdx.x] = s;
}

// A full-mask shuffle in a block of fewer than 32 threads.
extern "C" __global__ void t_partial_warp(float* out) {
	out[threadIdx.x] = ds_warp_max((float)threadIdx.x);
}

// Indexes a local array out of its bounds.
extern "C" __global__ void t_local_index(float* out, int k) {
	float a[4] = {1.0f, 2.0f, 3.0f, 4.0f};
	out[threadIdx.x] = a[k];
}

// Reads dynamic shared memory nobody wrote.
extern "C" __global__ void t_shared_unwritten(float* out) {
	extern __shared__ float sh[];
	out[threadIdx.x] = sh[threadIdx.x];
}

// The half conversions of every float16 and of floats around them.
extern "C" __global__ void t_half(float* wide, unsigned short* narrow, const float* x, int n) {
	DS_FOR_EACH(i, 65536ll) wide[i] = ds_half_to_float((unsigned short)i);
	DS_FOR_EACH(i, (long long)n) narrow[i] = ds_float_to_half_rn(x[i]);
}
`

// TestEmulator checks the emulator itself: a barrier that threads reach at
// different places and a shuffle with a missing lane are deadlocks, out of
// bounds accesses fault, a block reduction through shuffles and barriers
// sums right, and the half conversions match the api package's.
func TestEmulator(t *testing.T) {
	srcs := []kernels.Source{{Name: "emutest.cu", Code: emuTestSource}}
	for _, m := range sigRE.FindAllStringSubmatch(emuTestSource, -1) {
		srcs[0].Kernels = append(srcs[0].Kernels, m[1])
	}
	dev := newEmuDevice(loadEmu(t, srcs, kernels.Headers()), 1<<30)
	defer dev.close()
	alloc := func(n int64) driver.DevicePtr {
		p, err := dev.alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The test kernels are not in kernels.Sources: their signatures join
	// the table that checkLaunch reads.
	sigs.once.Do(parseSignatures)
	for k, ps := range emuParams(emuTestSource) {
		sigs.byName[k], sigs.source[k] = nil, srcs[0].Name
		for _, p := range ps {
			sigs.byName[k] = append(sigs.byName[k], paramKind(p.typ+" "+p.name))
		}
	}
	launch := dev.launch
	geom := func(grid, block uint32, shared uint32) kernels.Geometry {
		return kernels.Geometry{Grid: driver.Dim3{X: grid, Y: 1, Z: 1}, Block: driver.Dim3{X: block, Y: 1, Z: 1}, Shared: shared}
	}
	wantErr := func(err error, parts ...string) {
		t.Helper()
		if err == nil {
			t.Errorf("no error, want one with %q", parts)
			return
		}
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not say %q", err, p)
			}
		}
		t.Logf("as expected: %v", err)
	}

	out := alloc(64 * 4)
	wantErr(launch("t_divergent_sync", geom(1, 64, 0), out), "t_divergent_sync block (0,0,0): deadlock",
		"32 waiting in __syncthreads at emutest.cu:6", "32 waiting in __syncthreads at emutest.cu:9")
	wantErr(launch("t_partial_warp", geom(1, 20, 0), out), "deadlock", "20 waiting in a shuffle (mask 0xffffffff) at common.cuh")

	small := alloc(10 * 4)
	wantErr(launch("t_overrun", geom(1, 32, 0), small, int32(10)), "t_overrun block (0,0,0) thread (10,0,0): an invalid memory access",
		"0 bytes past the end of the 40-byte allocation", "argument 0 out (at offset 0)", "emutest.cu:16")
	if err := launch("t_overrun", geom(1, 32, 0), small, int32(9)); err != nil {
		t.Errorf("in bounds: %v", err)
	}
	wantErr(launch("t_underrun", geom(1, 32, 0), small), "t_underrun wrote 4 bytes before the start of the 40-byte allocation")
	wantErr(launch("t_local_index", geom(1, 32, 0), out, int32(4)), "an array index out of bounds", "emutest.cu:38")

	shared := alloc(32 * 4)
	if err := launch("t_shared_unwritten", geom(1, 32, 128), shared); err != nil {
		t.Fatal(err)
	}
	for i, v := range dev.f32s(shared, 32) {
		if !math.IsNaN(float64(v)) {
			t.Errorf("unwritten shared memory [%d] reads %v, want the NaN poison", i, v)
			break
		}
	}

	const blocks, threads = 3, 256
	x, sums := alloc(blocks*threads*4), alloc(blocks*8)
	xs := dev.f32s(x, blocks*threads)
	want := make([]float64, blocks)
	for i := range xs {
		xs[i] = float32(i%97) * 0.25
		want[i/threads] += float64(xs[i])
	}
	if err := launch("t_block_sum", geom(blocks, threads, 0), sums, x); err != nil {
		t.Fatal(err)
	}
	got := unsafeF64s(dev.span(sums, blocks*8))
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("block %d: ds_block_sum %v, want %v", i, got[i], want[i])
		}
	}

	const n = 1 << 16
	wide, narrow, src := alloc(65536*4), alloc(n*2), alloc(n*4)
	fs := dev.f32s(src, n)
	for i := range fs {
		fs[i] = math.Float32frombits(uint32(i) * 0x10001) // every exponent, sign and low and high mantissa bits
	}
	fs[0], fs[1], fs[2] = float32(math.NaN()), 65519.99, 65520
	if err := launch("t_half", geom(64, 256, 0), wide, narrow, src, int32(n)); err != nil {
		t.Fatal(err)
	}
	ws := dev.f32s(wide, 65536)
	for h := range 65536 {
		if w := api.Float16ToFloat32(uint16(h)); math.Float32bits(w) != math.Float32bits(ws[h]) {
			t.Fatalf("ds_half_to_float(%#04x) = %#08x, want %#08x", h, math.Float32bits(ws[h]), math.Float32bits(w))
		}
	}
	ns := unsafeU16s(dev.span(narrow, n*2))
	for i, f := range fs {
		if w := api.Float32ToFloat16(f); w != ns[i] {
			t.Fatalf("ds_float_to_half_rn(%v = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), ns[i], w)
		}
	}

	// The emulator's signal handler passes Go's own faults on to the Go
	// runtime: a nil dereference is still a panic.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a nil dereference did not panic under the emulator's signal handler")
			}
		}()
		var p *int32
		escape = *p
	}()

	// A tensor's block ends where the tensor does, not at its size class.
	b, bdev := newEmu(t, Options{})
	for _, n := range []int{3, 100, 1000} {
		x := b.Alloc(api.F32, n).(*Tensor)
		if got := len(bdev.bytesAt(x.ptr())); got != 4*n {
			t.Errorf("a tensor of %d floats: %d bytes addressable, want %d", n, got, 4*n)
		}
	}
}

// TestComplianceEmu runs the compliance suite with the kernels' CUDA C on
// the CPU (the emulated device), as TestComplianceFake runs it with their
// Go models.
func TestComplianceEmu(t *testing.T) {
	b, dev := newEmu(t, Options{Staging: 4096})
	start := time.Now()
	backendtest.Run(t, b)
	used := dev.launched()
	for _, k := range suiteKernels {
		if used[k] == 0 {
			t.Errorf("the suite never launched %s", k)
		}
	}
	t.Logf("%v; launches: %v", time.Since(start), used)
	t.Logf("host fallback: %v", b.HostOps())
}

// TestModelsEmu runs every built-in architecture on the emulated device
// against the CPU backend (checkModels).
func TestModelsEmu(t *testing.T) {
	b, _ := newEmu(t, Options{})
	checkModels(t, b)
}

func unsafeF64s(b []byte) []float64 { return unsafe.Slice((*float64)(unsafe.Pointer(&b[0])), len(b)/8) }
func unsafeU16s(b []byte) []uint16  { return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2) }

// TestParityEmu checks the PyTorch parity fixtures on the emulated device
// (checkParity), with no host round-trip.
func TestParityEmu(t *testing.T) {
	b, _ := newEmu(t, Options{})
	checkParity(t, b)
	if h := b.HostOps(); len(h) != 0 {
		t.Errorf("host fallback: %v", h)
	}
}

// TestTrainStepEmu checks a training step on the emulated device
// (checkTrainStep).
func TestTrainStepEmu(t *testing.T) {
	checkTrainStep(t, func(t *testing.T) *Backend {
		b, _ := newEmu(t, Options{})
		return b
	})
}

// escape keeps TestEmulator's nil dereference from being optimized away.
var escape int32
