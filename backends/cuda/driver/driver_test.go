package driver

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// On a machine without a driver (CI, this project's machines), loading it
// fails with an error that names what was looked for; with one, it works.
func TestLoadDriver(t *testing.T) {
	d, err := LoadDriver()
	if err == nil {
		n, err := d.DeviceCount()
		t.Logf("CUDA driver %s, version %d, %d devices (%v)", d.Path, d.Version, n, err)
		return
	}
	t.Logf("LoadDriver: %v", err)
	if !errors.Is(err, api.ErrUnsupported) {
		t.Fatalf("error %v does not wrap api.ErrUnsupported", err)
	}
	var le *LoadError
	if errors.As(err, &le) {
		msg := err.Error()
		if !strings.HasPrefix(msg, "no CUDA driver found (looked for ") {
			t.Errorf("message %q", msg)
		}
		want := "libcuda.so.1"
		if v := os.Getenv(DriverEnv); v != "" {
			want = v
		}
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name %s", msg, want)
		}
	}
	// The result is kept: a second call answers the same.
	if _, err2 := LoadDriver(); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second LoadDriver: %v", err2)
	}
}

func TestLoadErrorLists(t *testing.T) {
	_, err := loadDriver([]string{"libdensessm-absent.so.1", "/nonexistent/libcuda.so.1", "/nonexistent/libcuda.so.1"})
	if err == nil {
		t.Fatal("loaded a library that does not exist")
	}
	if !errors.Is(err, api.ErrUnsupported) {
		t.Errorf("%v does not wrap api.ErrUnsupported", err)
	}
	var le *LoadError
	if !errors.As(err, &le) || len(le.Tried) != 2 {
		t.Fatalf("want a LoadError with two attempts (the duplicate dropped), got %#v", err)
	}
	msg := err.Error()
	for _, s := range []string{"no CUDA driver found (looked for libdensessm-absent.so.1", "/nonexistent/libcuda.so.1)"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
	if _, err := loadDriver(nil); err == nil || !strings.Contains(err.Error(), "looked for )") {
		t.Errorf("no candidates: %v", err)
	}
}

// A library that opens but is not the driver: every missing symbol is
// named, and nothing is called.
func TestLoadMissingSymbols(t *testing.T) {
	if !DynamicLoading {
		t.Skip("no dynamic loader on " + runtime.GOOS + "/" + runtime.GOARCH)
	}
	_, err := loadDriver([]string{"libc.so.6"})
	if err == nil {
		t.Fatal("libc.so.6 loaded as the CUDA driver")
	}
	var le *LoadError
	if !errors.As(err, &le) || le.Path != "libc.so.6" || len(le.Missing) == 0 || le.Missing[0] != "cuInit" {
		t.Fatalf("got %v", err)
	}
	if !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), "lacks cuInit, cuDriverGetVersion") {
		t.Errorf("message %q", err)
	}
	if _, err := loadNVRTC([]string{"libc.so.6"}); err == nil || !strings.Contains(err.Error(), "NVRTC at libc.so.6 lacks nvrtcVersion") {
		t.Errorf("NVRTC from libc: %v", err)
	}
	if _, err := loadCUBLAS([]string{"libc.so.6"}, []string{"libc.so.6"}); err == nil || !strings.Contains(err.Error(), "cublasLtGetVersion") {
		t.Errorf("cuBLAS from libc: %v", err)
	}
}

func TestEnvCandidates(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(NVRTCEnv, dir)
	c := nvrtcCandidates()
	if len(c) == 0 || c[0] != dir+"/libnvrtc.so.13" {
		t.Fatalf("candidates %v", c[:min(len(c), 3)])
	}
	found := false
	for _, p := range c {
		found = found || p == dir+"/nvidia/cu13/lib/libnvrtc.so.13"
	}
	if !found {
		t.Errorf("the wheel layout under %s is not searched: %v", dir, c)
	}
	t.Setenv(NVRTCEnv, dir+"/libnvrtc.so.99")
	if c := nvrtcCandidates(); c[0] != dir+"/libnvrtc.so.99" {
		t.Errorf("a file: %v", c[:1])
	}
	t.Setenv(DriverEnv, "/x/libcuda.so.1")
	if c := driverCandidates(); len(c) != 1 || c[0] != "/x/libcuda.so.1" {
		t.Errorf("driver candidates with %s: %v", DriverEnv, c)
	}
}

func TestRowMajor(t *testing.T) {
	// dst[2,3] = a[2,4] b[4,3]: column-major dst^T[3,2] = b^T[3,4] a^T[4,2].
	g := RowMajor(2, 3, 4, false, false)
	if g.M != 3 || g.N != 2 || g.K != 4 || g.LDA != 3 || g.LDB != 4 || g.LDC != 3 || g.TA != OpN || g.TB != OpN {
		t.Errorf("NN: %+v", g)
	}
	g = RowMajor(2, 3, 4, true, true) // a [4,2], b [3,4]
	if g.LDA != 4 || g.LDB != 2 || g.TA != OpT || g.TB != OpT {
		t.Errorf("TT: %+v", g)
	}
}

func TestDriverErrorUnwrap(t *testing.T) {
	e := &Error{Call: "cuMemAlloc_v2", Code: ErrorOutOfMemory, Name: "CUDA_ERROR_OUT_OF_MEMORY", Msg: "out of memory"}
	if !errors.Is(e, api.ErrOutOfMemory) {
		t.Error("out of memory does not wrap api.ErrOutOfMemory")
	}
	if (&Error{Code: ErrorInvalidValue}).Unwrap() != nil {
		t.Error("invalid value unwraps")
	}
}
