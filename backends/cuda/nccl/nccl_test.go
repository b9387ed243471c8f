package nccl

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cuda/driver"
)

// RequireEnv set to 1 makes a missing NCCL fail TestLoad instead of
// passing with a note (for a run that points DENSESSM_NCCL at a library).
const RequireEnv = "DENSESSM_REQUIRE_NCCL"

// On a machine without NCCL (CI, this project's machines) loading fails
// with a LoadError that names every place looked at; with NCCL it works,
// with no GPU needed.
func TestLoad(t *testing.T) {
	n, err := Load()
	if err == nil {
		t.Logf("NCCL %s (%d) from %s", n.VersionString(), n.Version, n.Path)
		return
	}
	t.Logf("Load: %v", err)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s=1 and no NCCL: %v", RequireEnv, err)
	}
	if !errors.Is(err, api.ErrUnsupported) {
		t.Fatalf("error %v does not wrap api.ErrUnsupported", err)
	}
	var le *driver.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error %T is not a *driver.LoadError", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "no NCCL library found (looked for ") {
		t.Errorf("message %q", msg)
	}
	for _, want := range []string{"libnccl.so.2", "/usr/local/cuda/lib64/libnccl.so.2"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name %s", msg, want)
		}
	}
	if _, err2 := Load(); err2 == nil || err2.Error() != msg {
		t.Errorf("second Load: %v", err2)
	}
}

func TestLoadErrorLists(t *testing.T) {
	_, err := load([]string{"libdensessm-absent.so.2", "/nonexistent/libnccl.so.2", "/nonexistent/libnccl.so.2"})
	if err == nil {
		t.Fatal("loaded a library that does not exist")
	}
	if !errors.Is(err, api.ErrUnsupported) {
		t.Errorf("%v does not wrap api.ErrUnsupported", err)
	}
	var le *driver.LoadError
	if !errors.As(err, &le) || len(le.Tried) != 2 || le.What != "NCCL library" {
		t.Fatalf("want a LoadError with two attempts (the duplicate dropped), got %#v", err)
	}
	msg := err.Error()
	for _, s := range []string{"no NCCL library found (looked for libdensessm-absent.so.2", ", /nonexistent/libnccl.so.2)"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
}

// A library that opens but is not NCCL: every missing symbol is named.
func TestLoadMissingSymbols(t *testing.T) {
	if !driver.DynamicLoading {
		t.Skip("no dynamic loader on " + runtime.GOOS + "/" + runtime.GOARCH)
	}
	_, err := load([]string{"libc.so.6"})
	var le *driver.LoadError
	if !errors.As(err, &le) || le.Path != "libc.so.6" || len(le.Missing) != 10 || le.Missing[0] != "ncclGetVersion" {
		t.Fatalf("libc as NCCL: %v", err)
	}
	if !errors.Is(err, api.ErrUnsupported) || !strings.Contains(err.Error(), "ncclAllReduce") || strings.Contains(err.Error(), "ncclGetLastError") {
		t.Errorf("message %q", err)
	}
}

func TestCandidates(t *testing.T) {
	dir := t.TempDir()
	venv := t.TempDir()
	wheel := filepath.Join(venv, "lib", "python3.11", "site-packages", "nvidia", "nccl", "lib")
	if err := os.MkdirAll(wheel, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VIRTUAL_ENV", venv)
	t.Setenv("CUDA_HOME", "/opt/tk")
	t.Setenv(Env, dir)
	c := candidates()
	want := []string{
		dir + "/libnccl.so.2", dir + "/lib/libnccl.so.2", dir + "/lib64/libnccl.so.2", dir + "/nvidia/nccl/lib/libnccl.so.2",
		"libnccl.so.2", "/opt/tk/lib64/libnccl.so.2",
	}
	if len(c) < len(want)+1 || strings.Join(c[:len(want)], " ") != strings.Join(want, " ") {
		t.Fatalf("candidates %q, want them to start with %q", c, want)
	}
	found := false
	for _, p := range c {
		found = found || p == filepath.Join(wheel, "libnccl.so.2")
	}
	if !found {
		t.Errorf("the wheel's directory in $VIRTUAL_ENV is not searched: %q", c)
	}
	t.Setenv(Env, "/some/file/libnccl.so.2")
	if c := candidates(); c[0] != "/some/file/libnccl.so.2" || c[1] != "libnccl.so.2" {
		t.Errorf("a file in %s: %q", Env, c[:2])
	}
}

func TestVersionString(t *testing.T) {
	for v, want := range map[int]string{23206: "2.32.6", 21903: "2.19.3", 2708: "2.7.8"} {
		if got := (&NCCL{Version: v}).VersionString(); got != want {
			t.Errorf("%d: %q, want %q", v, got, want)
		}
	}
}

// fake is the C stand-in of testdata/fake_nccl.c, built with the
// machine's C compiler: the bindings' signatures checked on the C side.
type fake struct {
	*NCCL
	state func(out *[64]int64)
	reset func(async int32)
}

func loadFake(t *testing.T) *fake {
	t.Helper()
	if !driver.DynamicLoading {
		t.Skip("no dynamic loader on " + runtime.GOOS + "/" + runtime.GOARCH)
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build the fake libnccl: ", err)
	}
	so := filepath.Join(t.TempDir(), "libnccl.so.2")
	out, err := exec.Command(cc, "-shared", "-fPIC", "-O1", "-Wl,-soname,libnccl-densessm-fake.so", "-o", so, "testdata/fake_nccl.c").CombinedOutput()
	if err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	n, err := load([]string{so})
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{NCCL: n}
	lib, _ := driver.OpenFirst("NCCL library", []string{so})
	if err := lib.Bind([]driver.Binding{{Name: "fake_state", Fptr: &f.state}, {Name: "fake_reset", Fptr: &f.reset}}); err != nil {
		t.Fatal(err)
	}
	return f
}

// Indices of st[] in fake_nccl.c.
const (
	stInitN = iota
	stInitRank
	stInitIDOK
	stGroupStart
	stGroupEnd
	stAllReduces
	stDestroyed
	stAborted
	stAR0
)

func TestBindingsOnFake(t *testing.T) {
	f := loadFake(t)
	f.reset(0)
	var st [64]int64
	if f.Version != 23206 || f.VersionString() != "2.32.6" {
		t.Fatalf("version %d", f.Version)
	}
	id, err := f.GetUniqueID()
	if err != nil || id[0] != 3 || id[1] != 10 || id[127] != byte((127*7+3)%256) {
		t.Fatalf("GetUniqueID: %v %x", err, id[:4])
	}
	// The id goes by value (128 bytes): the C side must see every byte.
	c, err := f.InitRank(4, 2, id)
	if err != nil {
		t.Fatal(err)
	}
	f.state(&st)
	if st[stInitN] != 4 || st[stInitRank] != 2 || st[stInitIDOK] != 1 {
		t.Fatalf("ncclCommInitRank saw nranks %d rank %d id ok %d", st[stInitN], st[stInitRank], st[stInitIDOK])
	}
	if c.Rank() != 2 || c.Size() != 4 || c.h.Load() != 0x1002 {
		t.Fatalf("comm %d of %d, handle %#x", c.Rank(), c.Size(), c.h.Load())
	}
	if _, err := f.InitRank(4, 4, id); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("rank 4 of 4: %v", err)
	}
	_, err = f.InitRank(99, 0, id)
	var ne *Error
	if !errors.As(err, &ne) || ne.Code != InvalidArgument || err.Error() != "nccl: ncclCommInitRank: invalid argument (fake) (4): last error (fake)" {
		t.Errorf("a failed init: %v", err)
	}

	// One buffer: no group; several: one group around them.
	f.reset(0)
	if err := c.AllReduceSumF32(0x77, Buffer{Send: 0xa000, Recv: 0xa000, Count: 5}); err != nil {
		t.Fatal(err)
	}
	f.state(&st)
	if got := st[stAR0 : stAR0+7]; st[stAllReduces] != 1 || st[stGroupStart] != 0 ||
		got[0] != 0xa000 || got[1] != 0xa000 || got[2] != 5 || got[3] != typeFloat32 || got[4] != opSum || got[5] != 0x1002 || got[6] != 0x77 {
		t.Fatalf("ncclAllReduce saw %#x (%d calls, %d groups)", got, st[stAllReduces], st[stGroupStart])
	}
	f.reset(0)
	bufs := []Buffer{{Send: 0xb000, Recv: 0xc000, Count: 1 << 40}, {Send: 0xd000, Recv: 0xd000, Count: 0}, {Send: 0xe000, Recv: 0xe000, Count: 3}}
	if err := c.AllReduceSumF32(0x88, bufs...); err != nil {
		t.Fatal(err)
	}
	f.state(&st)
	if st[stAllReduces] != 3 || st[stGroupStart] != 1 || st[stGroupEnd] != 1 {
		t.Fatalf("3 buffers: %d calls in %d/%d groups", st[stAllReduces], st[stGroupStart], st[stGroupEnd])
	}
	for i, b := range bufs {
		got := st[stAR0+7*i : stAR0+7*i+7]
		if got[0] != int64(b.Send) || got[1] != int64(b.Recv) || got[2] != int64(b.Count) || got[6] != 0x88 {
			t.Errorf("buffer %d: C saw %#x", i, got)
		}
	}
	// A failed call in a group still closes the group.
	f.reset(0)
	err = c.AllReduceSumF32(0, Buffer{Count: 1}, Buffer{Count: 777}, Buffer{Count: 2})
	f.state(&st)
	if !errors.As(err, &ne) || ne.Code != InvalidUsage || ne.Detail != "last error of a comm (fake)" || st[stGroupEnd] != 1 || st[stAllReduces] != 2 {
		t.Errorf("failed all-reduce: %v; %d calls, %d group ends", err, st[stAllReduces], st[stGroupEnd])
	}
	if err := c.AllReduceSumF32(0, Buffer{Count: -1}); !errors.Is(err, api.ErrOutOfRange) {
		t.Errorf("negative count: %v", err)
	}

	if err := c.AsyncError(); err != nil {
		t.Errorf("AsyncError of a healthy comm: %v", err)
	}
	f.reset(int32(RemoteError))
	if err := c.AsyncError(); !errors.As(err, &ne) || ne.Code != RemoteError {
		t.Errorf("AsyncError of a broken comm: %v", err)
	}

	if err := c.Abort(); err != nil {
		t.Fatal(err)
	}
	f.state(&st)
	if st[stAborted] != 0x1002 {
		t.Errorf("ncclCommAbort saw %#x", st[stAborted])
	}
	if err := c.AllReduceSumF32(0, Buffer{Count: 1}); err == nil || c.AsyncError() == nil || c.Destroy() != nil || c.Abort() != nil {
		t.Error("calls after Abort")
	}
	c2, _ := f.InitRank(1, 0, id)
	if err := c2.Destroy(); err != nil {
		t.Fatal(err)
	}
	f.state(&st)
	if st[stDestroyed] != 0x1000 {
		t.Errorf("ncclCommDestroy saw %#x", st[stDestroyed])
	}
	if err := c2.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

// The real library, where DENSESSM_NCCL points at one (make nccl-test
// would; plain go test skips): version, a unique id, and, with no GPU,
// InitRank failing with NCCL's error rather than a crash.
func TestRealLibrary(t *testing.T) {
	if os.Getenv(Env) == "" {
		t.Skip(Env + " is not set: the real libnccl is not tried (it is found through the usual places only by TestLoad)")
	}
	n, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NCCL %s (%d) from %s", n.VersionString(), n.Version, n.Path)
	id, err := n.GetUniqueID()
	if err != nil {
		t.Fatalf("GetUniqueID: %v", err)
	}
	if id == (UniqueID{}) {
		t.Fatal("GetUniqueID gave zeros")
	}
	if d, err := driver.LoadDriver(); err == nil {
		if k, _ := d.DeviceCount(); k > 0 {
			t.Skipf("a CUDA driver with %d devices: the GPU tests (nccl_gpu_test.go) run the communicator", k)
		}
	}
	c, err := n.InitRank(1, 0, id)
	if err == nil {
		c.Destroy()
		t.Fatal("InitRank worked without a GPU")
	}
	t.Logf("InitRank without a GPU: %v", err)
	var ne *Error
	if !errors.As(err, &ne) || ne.Code != UnhandledCudaError {
		t.Errorf("want an *Error with ncclUnhandledCudaError, got %v", err)
	}
}
