//go:build linux && (amd64 || arm64)

package cuda

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/backends/cuda/driver"
	"github.com/densessm/densessm/backends/cuda/kernels"
)

// The real device path (real.go, the purego bindings of backends/cuda/driver,
// NVRTC's CUBINs through the kernel cache, the prebuilt PTX) run end to end
// on the CPU: a stub libcuda and a stub libcublas, C compiled with cc
// (testdata/stubcuda: what they model is in their comments), stand in for
// the GPU's libraries, the kernels running in the emulator
// (emu_build_test.go) at the addresses the stub's cuMemAlloc_v2 returns.
// The driver is loaded once per process, so the device tests run in child
// processes of this test binary with the stubs named by the loaders'
// variables.

// stubEmuEnv names the emulator library the stub libcuda loads at cuInit.
const stubEmuEnv = "DENSESSM_CUDA_STUB_EMU"

// stubDir holds the stubs' C sources (relative to this package).
const stubDir = "testdata/stubcuda"

// buildStubs compiles the stub libcuda.so.1, libcublas.so.13 and
// libcublasLt.so.13 into a temporary directory and returns it, skipping
// the test where there is no C compiler unless DENSESSM_REQUIRE_EMU=1.
func buildStubs(t *testing.T) string {
	t.Helper()
	cc := emuTool(t, "cc", "the stub CUDA libraries")
	dir := t.TempDir()
	src := func(name string) string { return filepath.Join(stubDir, name) }
	flags := []string{"-shared", "-fPIC", "-O2", "-g", "-Wall", "-Wextra", "-I", stubDir}
	for _, b := range [][]string{
		{"-o", filepath.Join(dir, "libcuda.so.1"), "-Wl,-soname,libcuda.so.1", src("cuda.c"), "-ldl", "-lpthread"},
		{"-o", filepath.Join(dir, "libcublas.so.13"), "-Wl,-soname,libcublas.so.13", src("cublas.c"),
			"-L", dir, "-l:libcuda.so.1", "-Wl,-rpath," + dir},
		{"-o", filepath.Join(dir, "libcublasLt.so.13"), "-Wl,-soname,libcublasLt.so.13", "-DSTUB_LT", src("cublas.c")},
	} {
		out, err := exec.Command(cc, append(flags, b...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", cc, strings.Join(b, " "), err, out)
		}
		if len(out) > 0 {
			t.Errorf("%s warns building %s:\n%s", cc, filepath.Base(b[1]), out)
		}
	}
	return dir
}

// TestRealDeviceOnStubs runs the device tests (TestComplianceDevice,
// TestModelsDevice, TestParityDevice, TestGEMMPrecisionDevice,
// TestRetentionRecurrentDevice) through
// real.go on the stub libraries, with NVRTC's CUBINs for sm_90 (where
// NVRTC loads) and, at the same time, TestModelsDevice on the prebuilt
// PTX (DENSESSM_CUDA_PREBUILT=1), each in a child process of this test
// binary under DENSESSM_REQUIRE_GPU=1, with a kernel cache of its own.
func TestRealDeviceOnStubs(t *testing.T) {
	emu := loadEmu(t, kernels.Sources(), kernels.Headers())
	dir := buildStubs(t)
	if _, err := driver.LoadNVRTC(); err != nil {
		if os.Getenv("DENSESSM_REQUIRE_NVRTC") == "1" {
			t.Fatalf("DENSESSM_REQUIRE_NVRTC=1 and %v", err)
		}
		t.Logf("no NVRTC (%v): both runs take the prebuilt PTX", err)
	}
	env := []string{
		driver.DriverEnv + "=" + filepath.Join(dir, "libcuda.so.1"),
		driver.CUBLASEnv + "=" + dir,
		stubEmuEnv + "=" + emu.path,
		RequireGPUEnv + "=1",
	}
	for _, c := range []struct {
		name, pattern string
		env           []string
	}{
		{"NVRTC", "^(TestComplianceDevice|TestModelsDevice|TestParityDevice|TestGEMMPrecisionDevice|TestRetentionRecurrentDevice)$", nil},
		{"prebuilt", "^TestModelsDevice$", []string{PrebuiltEnv + "=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // the two children at once
			runStubChild(t, slices.Concat(env, c.env, []string{kernels.CacheEnv + "=" + t.TempDir()}), c.pattern)
		})
	}
}

// stubChildEnv are the variables a child must not inherit: they would
// choose another device, path or library than the test gives it.
var stubChildEnv = []string{FakeEnv, FallbackEnv, DeviceEnv, GEMMEnv, PrebuiltEnv, driver.DriverEnv, driver.CUBLASEnv,
	kernels.CacheEnv, stubEmuEnv, RequireGPUEnv}

// stubSummaryRE picks the lines of a child's verbose output worth logging:
// each test's result (not the subtests' passes), the device, and the
// stubs' messages; stubNoiseRE
// those left out of a failed child's output.
var (
	stubSummaryRE = regexp.MustCompile(`^(--- |ok|PASS|FAIL|stub lib)|device: `)
	stubNoiseRE   = regexp.MustCompile(`^(=== RUN|--- PASS|=== PAUSE|=== CONT)`)
)

// runStubChild runs the tests matching pattern in a child process of this
// test binary with env added to the environment, failing when the child
// fails (with its output) and logging its summary and time.
func runStubChild(t *testing.T, env []string, pattern string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", pattern, "-test.v", "-test.count=1", "-test.timeout=5m")
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(stubChildEnv, k) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	var summary, failed strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if stubSummaryRE.MatchString(line) && !(strings.HasPrefix(line, "--- PASS") && strings.Contains(line, "/")) { // no subtests
			summary.WriteString("\n\t" + line)
		}
		if !stubNoiseRE.MatchString(line) {
			failed.WriteString("\n\t" + line)
		}
	}
	if err != nil {
		t.Errorf("%s -test.run %q: %v after %v; its output (without the passing tests):%s", filepath.Base(os.Args[0]), pattern,
			err, took.Round(time.Millisecond), failed.String())
		return
	}
	if !bytes.Contains(out, []byte("--- PASS")) {
		t.Errorf("the child ran no test:\n%s", out)
	}
	t.Logf("%s in %v:%s", pattern, took.Round(time.Millisecond), summary.String())
}

// TestRetentionRecurrentDevice checks the recurrent form of Retention on
// the GPU against the CPU backend at every block height of
// kernels.RetentionGeometry (4 to 32 row groups of 32 threads): the
// compliance suite and the tiny models take only the smallest, and the
// largest blocks need the most registers (an H100 has 64 Ki a block):
// without its launch bounds, NVRTC 13.5's sm_90 CUBIN of the kernel took
// 128 registers a thread and dk over 256 failed with
// CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, on the stubs as on a GPU.
func TestRetentionRecurrentDevice(t *testing.T) {
	b, c := newDevice(t), api.Backend(cpu.New(api.BackendOptions{Threads: 2}))
	rng := rand.New(rand.NewPCG(5, 17))
	f := retForm{"recurrent", api.RetentionRecurrent, 0}
	v := retVariant{s0: true, offset: 3, state: true}
	for _, dk := range []int{16, 100, 200, 384, 512} {
		s := retShape{B: 1, H: 2, T: 3, dk: dk, dv: 40}
		in := newRetInputs(b, c, rng, s)
		da, ha := in.args(f, v)
		o, sT := retRandom(b, c, rng, s.B, s.H, s.T, s.dv), retRandom(b, c, rng, s.B, s.H, s.dk, s.dv)
		run := func() (err error) {
			defer api.Recover(&err)
			b.Retention(f.form, o.dev, sT.dev, da)
			b.Sync()
			return nil
		}
		if err := run(); err != nil {
			t.Fatalf("%v: %v", s, err) // a GPU's errors are sticky: nothing after works
		}
		c.(api.RetentionKernels).Retention(f.form, o.host, sT.host, ha)
		retClose(t, fmt.Sprintf("%v: o", s), o.dev, o.host, retOutTol)
		retClose(t, fmt.Sprintf("%v: sT", s), sT.dev, sT.host, retOutTol)
	}
}
