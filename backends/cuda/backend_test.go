package cuda

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/densessm/densessm/api"
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	"github.com/densessm/densessm/backends/backendtest"
	"github.com/densessm/densessm/backends/cpu"
)

// RequireGPUEnv set to 1 makes the tests that need a GPU fail instead of
// skipping when there is none (scripts/gpu-check.sh sets it).
const RequireGPUEnv = "DENSESSM_REQUIRE_GPU"

// newFake returns a backend on the fake device with the host fallback.
func newFake(t testing.TB, opts Options) *Backend {
	t.Helper()
	opts.Fake, opts.HostFallback = true, true
	if opts.Threads == 0 {
		opts.Threads = 2
	}
	b, err := NewWith(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// newDevice returns a backend on the GPU, skipping the test (or failing
// it under DENSESSM_REQUIRE_GPU=1) when there is none.
func newDevice(t testing.TB) *Backend {
	t.Helper()
	b, err := NewWith(Options{BackendOptions: api.BackendOptions{Threads: 2}, HostFallback: true})
	if err != nil {
		if os.Getenv(RequireGPUEnv) == "1" {
			t.Fatalf("no usable GPU under %s=1: %v", RequireGPUEnv, err)
		}
		t.Skipf("no GPU, skipped (scripts/gpu-check.sh runs this on a GPU machine): %v", err)
	}
	t.Cleanup(func() { b.Close() })
	t.Logf("device: %s", b.Device())
	return b
}

// fakeOf returns the fake device under b.
func fakeOf(b *Backend) *fakeDevice { return b.dev.(*fakeDevice) }

// suiteKernels are the kernels the compliance suite must launch: every
// kernel but ds_convert_i64_i32, which a test of its own covers.
var suiteKernels = []string{"ds_unary_f32", "ds_affine_f32", "ds_binary_f32", "ds_binary_same_f32", "ds_rmsnorm_f32",
	"ds_softmax_f32", "ds_log_softmax_f32", "ds_cross_entropy_f32", "ds_selective_scan_f32", "ds_retention_recurrent_f32", "cublasSgemm",
	"ds_window_u32", "ds_window_u8", "ds_permute_u32", "ds_permute_u8", "ds_gather_f32", "ds_gather_bf16",
	"ds_causal_conv1d_f32", "ds_rotary_f32", "ds_unary_grad_f32", "ds_sum_to_f32", "ds_rms_inv_f32",
	"ds_rmsnorm_grad_f32", "ds_rmsnorm_grad_w_f32", "ds_gather_grad_f32", "ds_convert_f32_bf16", "ds_convert_bf16_f32",
	"ds_retention_parallel_scores_f32", "ds_retention_decay_mask_f32", "ds_retention_scale_rows_f32", "ds_retention_state_decay_f32",
	"ds_softmax_grad_f32", "ds_log_softmax_grad_f32", "ds_causal_conv1d_grad_x_f32", "ds_causal_conv1d_grad_w_f32",
	"ds_convert_f32_q8_0", "ds_convert_q8_0_f32", "ds_gather_q8_0", "ds_selective_scan_grad_f32", "ds_scan_grad_sum_f32"}

// TestComplianceFake runs the compliance suite on the fake device: the
// backend's checks, layouts, dispatch (kernel arguments against the CUDA C
// signatures, cuBLAS's row-major mapping), allocator and copies, and the
// host fallback, with the CUDA kernels modelled in Go. A small staging
// buffer makes Upload and Download go in pieces.
func TestComplianceFake(t *testing.T) {
	b := newFake(t, Options{Staging: 4096})
	backendtest.Run(t, b)
	used := fakeOf(b).launched()
	for _, k := range suiteKernels {
		if used[k] == 0 {
			t.Errorf("the suite never launched %s", k)
		}
	}
	t.Logf("launches: %v", used)
	t.Logf("host fallback: %v", b.HostOps())
}

// TestComplianceDevice runs the compliance suite on the GPU.
func TestComplianceDevice(t *testing.T) {
	b := newDevice(t)
	backendtest.Run(t, b)
	t.Logf("host fallback: %v", b.HostOps())
}

// TestNoDriver checks the error of New where there is no CUDA driver: an
// error wrapping api.ErrUnsupported that says what was looked for, and the
// registered factory's error naming the backend.
func TestNoDriver(t *testing.T) {
	t.Setenv(FakeEnv, "")
	b, err := New(api.BackendOptions{})
	if err == nil {
		b.Close()
		t.Skip("a CUDA driver and device are present")
	}
	if !errors.Is(err, api.ErrUnsupported) {
		t.Fatalf("New without a GPU: %v, want an error wrapping api.ErrUnsupported", err)
	}
	t.Logf("New: %v", err)
	_, err = api.NewBackend("cuda", api.BackendOptions{})
	if !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), `backend "cuda"`) {
		t.Fatalf("api.NewBackend(cuda): %v", err)
	}
}

// TestFakeEnv checks that DENSESSM_CUDA_FAKE=1 selects the fake device and
// DENSESSM_CUDA_HOST_FALLBACK=0 turns the fallback off.
func TestFakeEnv(t *testing.T) {
	t.Setenv(FakeEnv, "1")
	t.Setenv(FallbackEnv, "0")
	be, err := api.NewBackend("cuda", api.BackendOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	b := be.(*Backend)
	defer b.Close()
	if !strings.Contains(b.Device(), "fake") || b.fallback {
		t.Fatalf("device %q, fallback %t", b.Device(), b.fallback)
	}
}

// TestUnwritten checks that, without the host fallback, an op with no
// CUDA kernel panics with an error wrapping api.ErrUnsupported that names
// it, and that the ops with kernels still run.
func TestUnwritten(t *testing.T) {
	b, err := NewWith(Options{Fake: true, BackendOptions: api.BackendOptions{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	x := api.FromFloat32s(b, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	x9, y9 := b.Alloc(api.F32, 2, 2, 2, 2, 2, 2, 2, 2, 2), b.Alloc(api.F32, 2, 2, 2, 2, 2, 2, 2, 2, 2)
	r := catch(func() { b.Permute(y9, x9, 8, 7, 6, 5, 4, 3, 2, 1, 0) })
	err, _ = r.(error)
	if !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), "Permute (more than 8 dimensions)") {
		t.Fatalf("Permute without the fallback: %v", r)
	}
	b.Unary(api.OpNeg, x, x)
	if got := api.Float32s(x); got[5] != -6 {
		t.Fatalf("Unary: %v", got)
	}
	if len(b.HostOps()) != 0 {
		t.Fatalf("host ops without the fallback: %v", b.HostOps())
	}
}

func catch(fn func()) (r any) {
	defer func() { r = recover() }()
	fn()
	return nil
}

// TestDispatch checks where each op runs: which kernel (or cuBLAS) it
// launches, and which go through the host.
func TestDispatch(t *testing.T) {
	b := newFake(t, Options{})
	f := func(shape ...int) api.Tensor { return b.Alloc(api.F32, shape...) }
	ids := api.FromInt32s(b, []int32{0, 2}, 2)
	cases := []struct {
		name, kernel string // kernel "" for the host, named by name
		fn           func()
	}{
		{"Unary", "ds_unary_f32", func() { b.Unary(api.OpExp, f(3), f(3)) }},
		{"Affine", "ds_affine_f32", func() { b.Affine(f(3), f(3), 2, 1) }},
		{"Binary same", "ds_binary_same_f32", func() { b.Binary(api.OpAdd, f(2, 3), f(2, 3), f(2, 3)) }},
		{"Binary broadcast", "ds_binary_f32", func() { b.Binary(api.OpMul, f(2, 3), f(2, 3), f(3)) }},
		{"MatMul", "cublasSgemm", func() { b.MatMul(f(2, 4), f(2, 3), f(4, 3), false, true, 1, 0) }},
		{"RMSNorm", "ds_rmsnorm_f32", func() { b.RMSNorm(f(2, 3), f(2, 3), f(3), 1e-5) }},
		{"Softmax", "ds_softmax_f32", func() { b.Softmax(f(2, 3), f(2, 3)) }},
		{"LogSoftmax", "ds_log_softmax_f32", func() { b.LogSoftmax(f(2, 3), f(2, 3)) }},
		{"CrossEntropy", "ds_cross_entropy_f32", func() { b.CrossEntropy(f(2), f(2, 3), f(2, 3), ids, api.IgnoreIndex) }},
		{"SelectiveScan", "ds_selective_scan_f32", func() {
			b.SelectiveScan(f(1, 2, 3), nil, nil, api.ScanArgs{X: f(1, 2, 3), Delta: f(1, 2, 3), A: f(3, 4), Bm: f(1, 2, 4), Cm: f(1, 2, 4)})
		}},
		{"Retention recurrent", "ds_retention_recurrent_f32", func() {
			b.Retention(api.RetentionRecurrent, f(1, 2, 1, 4), nil, api.RetentionArgs{Q: f(1, 2, 1, 3), K: f(1, 2, 1, 3), V: f(1, 2, 1, 4), Gamma: []float32{0.9, 0.5}})
		}},
		{"Permute", "ds_permute_u32", func() { b.Permute(f(3, 2), f(2, 3), 1, 0) }},
		{"Permute BF16", "ds_permute_u8", func() { b.Permute(b.Alloc(api.BF16, 3, 2), b.Alloc(api.BF16, 2, 3), 1, 0) }},
		{"Slice", "ds_window_u32", func() { b.Slice(f(2, 2), f(2, 5), 1, 3) }},
		{"Slice BF16 odd", "ds_window_u8", func() { b.Slice(b.Alloc(api.BF16, 2, 1), b.Alloc(api.BF16, 2, 5), 1, 3) }},
		{"SetSlice", "ds_window_u32", func() { b.SetSlice(f(2, 5), f(2, 2), 1, 3) }},
		{"Gather", "ds_gather_f32", func() { b.Gather(f(2, 3), f(3, 3), ids) }},
		{"Gather BF16", "ds_gather_bf16", func() { b.Gather(f(2, 3), b.Alloc(api.BF16, 3, 3), ids) }},
		{"CausalConv1d", "ds_causal_conv1d_f32", func() { b.CausalConv1d(f(1, 2, 3), f(1, 2, 3), f(3, 4), f(3), f(1, 3, 3)) }},
		{"Rotary", "ds_rotary_f32", func() { b.Rotary(f(1, 2, 4), f(1, 2, 4), []float32{1, 0.5}, 3, false) }},
		{"Permute (more than 8 dimensions)", "", func() {
			b.Permute(f(2, 2, 2, 2, 2, 2, 2, 2, 2), f(2, 2, 2, 2, 2, 2, 2, 2, 2), 8, 7, 6, 5, 4, 3, 2, 1, 0)
		}},
		{"Convert F32 to BF16", "ds_convert_f32_bf16", func() { b.Convert(b.Alloc(api.BF16, 3), f(3)) }},
		{"Convert F16 to F32", "ds_convert_f16_f32", func() { b.Convert(f(3), b.Alloc(api.F16, 3)) }},
		{"MatMul BF16", "ds_convert_bf16_f32", func() { b.MatMul(f(2, 4), f(2, 3), b.Alloc(api.BF16, 4, 3), false, true, 1, 0) }},
		{"Gather Q8_0", "ds_gather_q8_0", func() { b.Gather(f(2, 32), b.Alloc(api.Q8_0, 3, 32), ids) }},
		{"Convert I64 to I32", "ds_convert_i64_i32", func() { b.Convert(b.Alloc(api.I32, 3), b.Alloc(api.I64, 3)) }},
		{"Convert F32 to Q8_0", "ds_convert_f32_q8_0", func() { b.Convert(b.Alloc(api.Q8_0, 2, 32), f(2, 32)) }},
		{"Convert Q8_0 to F32", "ds_convert_q8_0_f32", func() { b.Convert(f(2, 32), b.Alloc(api.Q8_0, 2, 32)) }},
		{"MatMul Q8_0", "ds_convert_q8_0_f32", func() { b.MatMul(f(2, 4), f(2, 32), b.Alloc(api.Q8_0, 4, 32), false, true, 1, 0) }},
		{"SoftmaxGrad", "ds_softmax_grad_f32", func() { b.SoftmaxGrad(f(2, 3), f(2, 3), f(2, 3)) }},
		{"LogSoftmaxGrad", "ds_log_softmax_grad_f32", func() { b.LogSoftmaxGrad(f(2, 3), f(2, 3), f(2, 3)) }},
		{"CausalConv1dGrad", "ds_causal_conv1d_grad_x_f32", func() {
			b.CausalConv1dGrad(f(1, 2, 3), nil, nil, f(1, 3, 3), f(1, 2, 3), f(3, 4), nil, f(1, 2, 3))
		}},
		{"CausalConv1dGrad dw", "ds_causal_conv1d_grad_w_f32", func() {
			b.CausalConv1dGrad(nil, f(3, 4), f(3), nil, f(1, 2, 3), f(3, 4), f(1, 3, 3), f(1, 2, 3))
		}},
		{"UnaryGrad", "ds_unary_grad_f32", func() { b.UnaryGrad(api.OpSilu, f(3), f(3), f(3)) }},
		{"SumTo", "ds_sum_to_f32", func() { b.SumTo(f(1, 3), f(2, 3)) }},
		{"RMSNormGrad", "ds_rmsnorm_grad_f32", func() { b.RMSNormGrad(f(2, 3), f(3), f(2, 3), f(3), f(2, 3), 1e-5) }},
		{"RMSNormGrad dw", "ds_rmsnorm_grad_w_f32", func() { b.RMSNormGrad(nil, f(3), f(2, 3), f(3), f(2, 3), 1e-5) }},
		{"GatherGrad", "ds_gather_grad_f32", func() { b.GatherGrad(f(3, 3), ids, f(2, 3)) }},
		{"Retention parallel", "ds_retention_parallel_scores_f32", func() {
			b.Retention(api.RetentionParallel, f(1, 2, 1, 4), nil, api.RetentionArgs{Q: f(1, 2, 1, 3), K: f(1, 2, 1, 3), V: f(1, 2, 1, 4), Gamma: []float32{0.9, 0.5}})
		}},
		{"Retention chunkwise", "ds_retention_decay_mask_f32", func() {
			b.Retention(api.RetentionChunkwise, f(1, 2, 1, 4), f(1, 2, 3, 4), api.RetentionArgs{Q: f(1, 2, 1, 3), K: f(1, 2, 1, 3), V: f(1, 2, 1, 4), Gamma: []float32{0.9, 0.5}, Chunk: 4})
		}},
		{"Retention recurrent dk > 512", "ds_retention_decay_mask_f32", func() {
			b.Retention(api.RetentionRecurrent, f(1, 1, 1, 2), nil, api.RetentionArgs{Q: f(1, 1, 1, 600), K: f(1, 1, 1, 600), V: f(1, 1, 1, 2), Gamma: []float32{0.9}})
		}},
		{"RetentionGrad parallel", "ds_retention_parallel_scores_f32", func() {
			b.RetentionGrad(api.RetentionParallel, api.RetentionGrads{Q: f(1, 2, 1, 3)}, api.RetentionArgs{Q: f(1, 2, 1, 3), K: f(1, 2, 1, 3), V: f(1, 2, 1, 4), Gamma: []float32{0.9, 0.5}}, f(1, 2, 1, 4), nil)
		}},
		{"RetentionGrad recurrent", "ds_retention_decay_mask_f32", func() {
			b.RetentionGrad(api.RetentionRecurrent, api.RetentionGrads{V: f(1, 2, 1, 4)}, api.RetentionArgs{Q: f(1, 2, 1, 3), K: f(1, 2, 1, 3), V: f(1, 2, 1, 4), Gamma: []float32{0.9, 0.5}}, f(1, 2, 1, 4), nil)
		}},
		{"SelectiveScanGrad", "ds_selective_scan_grad_f32", func() {
			b.SelectiveScanGrad(api.ScanGrads{X: f(1, 2, 3), A: f(3, 4)}, api.ScanArgs{X: f(1, 2, 3), Delta: f(1, 2, 3), A: f(3, 4), Bm: f(1, 2, 4), Cm: f(1, 2, 4)}, f(1, 2, 3), nil, nil)
		}},
		{"SelectiveScanGrad (N > 256)", "", func() {
			b.SelectiveScanGrad(api.ScanGrads{X: f(1, 1, 1)}, api.ScanArgs{X: f(1, 1, 1), Delta: f(1, 1, 1), A: f(1, 300), Bm: f(1, 1, 300), Cm: f(1, 1, 300)}, f(1, 1, 1), nil, nil)
		}},
		{"SelectiveScan (N > 256)", "", func() {
			b.SelectiveScan(f(1, 1, 1), nil, nil, api.ScanArgs{X: f(1, 1, 1), Delta: f(1, 1, 1), A: f(1, 300), Bm: f(1, 1, 300), Cm: f(1, 1, 300)})
		}},
	}
	for _, c := range cases {
		before, hostBefore := fakeOf(b).launched(), b.HostOps()
		c.fn()
		after, hostAfter := fakeOf(b).launched(), b.HostOps()
		if c.kernel != "" && after[c.kernel] != before[c.kernel]+1 {
			t.Errorf("%s: %s launched %d times, want once", c.name, c.kernel, after[c.kernel]-before[c.kernel])
		}
		if c.kernel == "" && hostAfter[c.name] != hostBefore[c.name]+1 {
			t.Errorf("%s: not run on the host (%v)", c.name, hostAfter)
		}
		if c.kernel != "" && len(hostAfter) != len(hostBefore) {
			t.Errorf("%s: went through the host: %v", c.name, hostAfter)
		}
	}
}

// TestAllocator checks the caching allocator: size classes, reuse of a
// freed block of the same class (zeroed again), the cap (ErrOutOfMemory,
// after the cache is emptied), the garbage collector's cleanup, and a
// device that runs out before the cap.
func TestAllocator(t *testing.T) {
	for n, want := range map[int64]int64{1: 256, 256: 256, 257: 288, 512: 512, 513: 576, 1000: 1024, 1 << 20: 1 << 20, 1<<20 + 1: 1<<20 + 1<<17} {
		if got := sizeClass(n); got != want {
			t.Errorf("sizeClass(%d) = %d, want %d", n, got, want)
		}
	}
	b := newFake(t, Options{BackendOptions: api.BackendOptions{MaxMemory: 1 << 20}})
	x := api.FromFloat32s(b, []float32{1, 2, 3}, 3)
	b.Free(x)
	b.Free(x) // a second Free does nothing
	y := b.Alloc(api.F32, 3)
	st := b.MemStats()
	if st.Reuses != 1 || st.Allocs != 1 || st.InUse != 256 || st.Cached != 0 {
		t.Fatalf("after a reuse: %+v", st)
	}
	if got := api.Float32s(y); got[0] != 0 || got[2] != 0 {
		t.Fatalf("a reused block is not zeroed: %v", got)
	}
	big := b.Alloc(api.F32, 100_000) // 400 KB
	r := catch(func() { b.Alloc(api.F32, 200_000) })
	if err, _ := r.(error); !errors.Is(err, api.ErrOutOfMemory) || !strings.Contains(err.Error(), "cap") {
		t.Fatalf("an allocation past the cap: %v", r)
	}
	b.Free(big)
	z := b.Alloc(api.F32, 200_000) // fits once the cached block is evicted
	if st := b.MemStats(); st.Evictions != 1 || st.InUse != 256+sizeClass(800_000) {
		t.Fatalf("after an eviction: %+v", st)
	}
	runtime.KeepAlive(y) // else the collector's cleanup may free it before the check above
	b.Free(z)

	// A tensor no one frees goes back to the cache when it is collected.
	func() { b.Alloc(api.F32, 1000) }()
	deadline := time.Now().Add(5 * time.Second)
	for b.MemStats().Cached < sizeClass(800_000)+sizeClass(4000) && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if st := b.MemStats(); st.Cached < sizeClass(800_000)+sizeClass(4000) {
		t.Fatalf("an unreachable tensor was not returned: %+v", st)
	}

	// The device runs out before the cap: the cache is emptied and the
	// allocation tried again; then the device's error.
	small := newFake(t, Options{FakeMemory: 1 << 20, BackendOptions: api.BackendOptions{MaxMemory: 4 << 20}})
	a1 := small.Alloc(api.F32, 150_000)
	small.Free(a1)
	a2 := small.Alloc(api.F32, 200_000)
	if st := small.MemStats(); st.Evictions != 1 {
		t.Fatalf("device out of memory with a cached block: %+v", st)
	}
	r = catch(func() { small.Alloc(api.F32, 200_000) })
	if err, _ := r.(error); !errors.Is(err, api.ErrOutOfMemory) {
		t.Fatalf("device out of memory: %v", r)
	}
	small.Free(a2)
}

// TestStaging checks Upload and Download through a staging buffer smaller
// than the tensor, Reshape views and Copy between them.
func TestStaging(t *testing.T) {
	b := newFake(t, Options{Staging: 1000})
	v := make([]float32, 3000)
	for i := range v {
		v[i] = float32(i) * 0.5
	}
	x := api.FromFloat32s(b, v, 3000)
	got := api.Float32s(b.Reshape(x, 1, 3000))
	for i := range v {
		if got[i] != v[i] {
			t.Fatalf("element %d: %v, want %v", i, got[i], v[i])
		}
	}
	y := b.Alloc(api.F32, 8, 3, 125)
	b.Copy(y, x)
	b.Affine(x, x, 0, 0)
	if got := api.Float32s(y); got[2999] != v[2999] {
		t.Fatalf("copy: %v", got[2999])
	}
	if r := catch(func() { b.Upload(x, make([]byte, 5)) }); r == nil {
		t.Fatal("an upload of the wrong size did not panic")
	}
}

// TestSignatures checks that the kernel signatures are read from every
// CUDA C source and that a launch of the wrong arguments is refused.
func TestSignatures(t *testing.T) {
	k, file, ok := signatureOf("ds_binary_f32")
	if !ok || file != "elementwise.cu" || fmt.Sprint(k) != "[int pointer pointer pointer long long struct]" {
		t.Fatalf("ds_binary_f32: %v %s %t", k, file, ok)
	}
	k, _, _ = signatureOf("ds_cross_entropy_f32")
	if fmt.Sprint(k) != "[pointer pointer pointer pointer int int pointer]" {
		t.Fatalf("ds_cross_entropy_f32: %v", k)
	}
	if err := checkLaunch("ds_affine_f32", []any{1, 2}); err == nil {
		t.Fatal("a launch with the wrong arguments was accepted")
	}
	if err := checkLaunch("ds_nothing", nil); err == nil {
		t.Fatal("an unknown kernel was accepted")
	}
}

// tinyConfigs are small configurations of every built-in architecture.
var tinyConfigs = map[string]string{
	"mamba":       `{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "state_size": 8}`,
	"densemamba":  `{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 3, "state_size": 8}`,
	"retnet":      `{"vocab_size": 64, "decoder_embed_dim": 32, "decoder_retention_heads": 2, "decoder_ffn_embed_dim": 64, "decoder_layers": 2, "activation_fn": "swish"}`,
	"denseretnet": `{"vocab_size": 64, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 3}`,
}

// tinyModel builds tinyConfigs[name] with opts, closed when t ends.
func tinyModel(t *testing.T, name string, opts api.BuildOptions) api.Model {
	t.Helper()
	arch, err := api.LookupArchitecture(name)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := arch.ParseConfig([]byte(tinyConfigs[name]))
	if err != nil {
		t.Fatal(err)
	}
	m, err := arch.New(t.Context(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// checkModels builds every built-in architecture on b and on the CPU
// backend with the same seed and compares the logits of the parallel form
// and of recurrent steps (the decode path: the device's scan and
// retention kernels), and one training step's loss.
func checkModels(t *testing.T, b api.Backend) {
	ids := [][]int32{{1, 5, 9, 33, 2, 7, 11}, {3, 3, 60, 0, 17, 4, 8}}
	for _, name := range []string{"mamba", "densemamba", "retnet", "denseretnet"} {
		t.Run(name, func(t *testing.T) {
			ref := tinyModel(t, name, api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: 2}), Seed: 7})
			m := tinyModel(t, name, api.BuildOptions{On: b, Seed: 7})
			for _, form := range []api.Form{{}, {Mode: api.Recurrent}} {
				want, err := ref.Forward(t.Context(), ids, form)
				if err != nil {
					t.Fatal(err)
				}
				got, err := m.Forward(t.Context(), ids, form)
				if err != nil {
					t.Fatalf("%v form: %v", form.Mode, err)
				}
				if e := maxRel(api.Float32s(got), api.Float32s(want)); e > 1e-4 {
					t.Errorf("%v form: logits differ from the CPU backend's by %g (relative)", form.Mode, e)
				}
			}
			if tr, ok := m.(api.Trainable); ok {
				batch := api.Batch{Inputs: [][]int32{ids[0][:6]}, Targets: [][]int32{ids[0][1:]}}
				lw, err := ref.(api.Trainable).LossAndGrad(t.Context(), batch)
				if err != nil {
					t.Fatal(err)
				}
				lg, err := tr.LossAndGrad(t.Context(), batch)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(lg-lw) > 1e-4*math.Abs(lw) {
					t.Errorf("loss %v, CPU backend %v", lg, lw)
				}
			}
		})
	}
}

func maxRel(got, want []float32) float64 {
	var diff, scale float64
	for i := range want {
		diff = max(diff, math.Abs(float64(got[i])-float64(want[i])))
		scale = max(scale, math.Abs(float64(want[i])))
	}
	return diff / max(scale, 1e-30)
}

// TestModelsFake runs every built-in architecture on the fake device.
func TestModelsFake(t *testing.T) { checkModels(t, newFake(t, Options{})) }

// TestModelsDevice runs every built-in architecture on the GPU.
func TestModelsDevice(t *testing.T) { checkModels(t, newDevice(t)) }

// stepBoth returns a function that feeds one token to a new one-sequence
// state of m and of ref and returns both logits.
func stepBoth(t *testing.T, m, ref api.Model) func(tok int32) (got, want []float32) {
	t.Helper()
	var states [2]api.State
	for i, mm := range []api.Model{m, ref} {
		s, err := mm.NewState(1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		states[i] = s
	}
	return func(tok int32) (got, want []float32) {
		t.Helper()
		var out [2][]float32
		for i, mm := range []api.Model{m, ref} {
			l, err := mm.Step(t.Context(), states[i], []int32{tok})
			if err != nil {
				t.Fatal(err)
			}
			out[i] = api.Float32s(l)
		}
		return out[0], out[1]
	}
}

// TestDecodeStepFake checks that a decode step of every built-in
// architecture on the fake device makes no host round-trip and uploads
// nothing but its token ids (Gather, Slice,
// SetSlice, CausalConv1d and Rotary, which used to go through the host
// fallback, run as kernels; with BF16 weights, MatMul widens them on the
// device), and that its logits match the CPU backend's.
func TestDecodeStepFake(t *testing.T) {
	for _, c := range []struct {
		name    string
		weights api.DType
	}{{"mamba", api.F32}, {"densemamba", api.F32}, {"retnet", api.F32}, {"denseretnet", api.F32}, {"mamba", api.BF16}, {"retnet", api.BF16}} {
		name := c.name
		t.Run(name+"-"+c.weights.String(), func(t *testing.T) {
			b := newFake(t, Options{})
			m := tinyModel(t, name, api.BuildOptions{On: b, Seed: 3, Weights: c.weights})
			ref := tinyModel(t, name, api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: 2}), Seed: 3, Weights: c.weights})
			step := stepBoth(t, m, ref)
			const steps = 5
			before, launchesBefore := b.HostOps(), fakeOf(b).launched()
			var uploads int
			for i, tok := range []int32{1, 5, 9, 33, 2}[:steps] {
				got, want := step(tok)
				if e := maxRel(got, want); e > 1e-4 {
					t.Errorf("step %d: logits differ from the CPU backend's by %g (relative)", i, e)
				}
				if i == 0 {
					uploads = fakeOf(b).launched()["cuMemcpyHtoDAsync"]
				}
			}
			// After the first step, which uploads the constants (rotary's
			// theta, retention's decays: constF32), a step uploads its token
			// ids and nothing else.
			if n := fakeOf(b).launched()["cuMemcpyHtoDAsync"] - uploads; n != steps-1 {
				t.Errorf("%d uploads in %d decode steps after the first, want one a step (the ids)", n, steps-1)
			}
			after, launches := b.HostOps(), fakeOf(b).launched()
			total := 0
			for op, n := range after {
				if d := n - before[op]; d != 0 {
					total += d
					t.Errorf("%s went through the host %d times in %d decode steps", op, d, steps)
				}
			}
			perToken := map[string]float64{}
			for k, n := range launches {
				if d := n - launchesBefore[k]; d != 0 {
					perToken[k] = float64(d) / steps
				}
			}
			t.Logf("host round-trips per token: %g; launches per token: %v", float64(total)/steps, perToken)
		})
	}
}

// TestTrainStepFake checks a training step on the fake device
// (checkTrainStep).
func TestTrainStepFake(t *testing.T) {
	checkTrainStep(t, func(t *testing.T) *Backend { return newFake(t, Options{}) })
}

// checkTrainStep checks that a training step (LossAndGrad) of every
// built-in architecture, over a ragged and packed batch, on a backend that
// newBackend makes makes no host round-trip, and that its loss and
// gradients match the CPU backend's (loss to 1e-5, each gradient to 1e-4
// of its largest element: the device sums in other orders).
func checkTrainStep(t *testing.T, newBackend func(t *testing.T) *Backend) {
	// Two rows of different lengths, the second packed with a document
	// starting at position 3.
	batch := api.Batch{
		Inputs:  [][]int32{{1, 5, 9, 33, 2, 7}, {3, 3, 60, 0, 17}},
		Targets: [][]int32{{5, 9, 33, 2, 7, 11}, {3, 60, 0, 17, 4}},
		Starts:  [][]int{nil, {3}},
	}
	for _, name := range []string{"mamba", "densemamba", "retnet", "denseretnet"} {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t)
			var loss [2]float64
			var grads [2][]api.Parameter
			for i, on := range []api.Backend{b, cpu.New(api.BackendOptions{Threads: 2})} {
				m := tinyModel(t, name, api.BuildOptions{On: on, Seed: 5})
				var err error
				if loss[i], err = m.(api.Trainable).LossAndGrad(t.Context(), batch); err != nil {
					t.Fatal(err)
				}
				grads[i] = m.(api.Trainable).Grads()
			}
			if math.Abs(loss[0]-loss[1]) > 1e-5*math.Abs(loss[1]) {
				t.Errorf("loss %v, CPU backend %v", loss[0], loss[1])
			}
			for op, n := range b.HostOps() {
				t.Errorf("%s went through the host %d times in a training step", op, n)
			}
			for i, p := range grads[1] {
				if e := maxRel(api.Float32s(grads[0][i].Value), api.Float32s(p.Value)); grads[0][i].Name != p.Name || e > 1e-4 {
					t.Errorf("%s (%s): gradient differs from the CPU backend's by %g (relative)", p.Name, grads[0][i].Name, e)
				}
			}
		})
	}
}
