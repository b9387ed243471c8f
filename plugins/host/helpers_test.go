package host

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/densessm/densessm/plugins/sdk" // what the plugins link: a change rebuilds this test
)

// plugins holds the plugin binaries the tests build once.
var plugins struct {
	once sync.Once
	dir  string
	err  error
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if plugins.dir != "" {
		os.RemoveAll(plugins.dir)
	}
	os.Exit(code)
}

// pluginDir builds densessm-backend-cpu and the fault plugin (as
// densessm-plugin-faulty) into a folder and returns it.
func pluginDir(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds plugin binaries")
	}
	// The plugins' own sources, read so that go test's cache knows the
	// results depend on them (the rest of what they link, the test binary
	// links too: sdk, through the blank import below).
	for _, dir := range []string{"../../cmd/densessm-backend-cpu", "internal/faultplugin"} {
		readSources(t, dir)
	}
	plugins.once.Do(func() {
		dir, err := os.MkdirTemp("", "densessm-plugins-")
		if err != nil {
			plugins.err = err
			return
		}
		plugins.dir = dir
		for pkg, name := range map[string]string{
			"github.com/densessm/densessm/cmd/densessm-backend-cpu":          "densessm-backend-cpu",
			"github.com/densessm/densessm/plugins/host/internal/faultplugin": "densessm-plugin-faulty",
		} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
			if err != nil {
				plugins.err = &buildError{pkg, string(out), err}
				return
			}
		}
	})
	if plugins.err != nil {
		t.Fatal(plugins.err)
	}
	return plugins.dir
}

// readSources reads the .go files of dir.
func readSources(t testing.TB, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("sources of %s: %v", dir, err)
	}
	for _, f := range files {
		if _, err := os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
}

type buildError struct {
	pkg, out string
	err      error
}

func (e *buildError) Error() string { return "go build " + e.pkg + ": " + e.err.Error() + "\n" + e.out }

// testOptions are Options that look only in the test's plugin folder and
// read no lock file of the user's.
func testOptions(t testing.TB) Options {
	return Options{Dirs: []string{pluginDir(t)}, LockFile: filepath.Join(t.TempDir(), "none.lock"), Log: testLog{t}}
}

// openPlugin opens the plugin name of the test folder, closed at the end.
func openPlugin(t testing.TB, name string, opts Options) *Plugin {
	t.Helper()
	p, err := Open(context.Background(), filepath.Join(pluginDir(t), name), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// testLog writes plugin stderr to the test log.
type testLog struct{ t testing.TB }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// children returns the live child processes of this process, waiting up
// to two seconds for them to go.
func children(t testing.TB) []int {
	t.Helper()
	var kids []int
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		kids = kids[:0]
		entries, err := os.ReadDir("/proc")
		if err != nil {
			t.Skip("no /proc to look for child processes in")
		}
		me := strconv.Itoa(os.Getpid())
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if err != nil {
				continue
			}
			// pid (comm) state ppid ...: comm may hold spaces, so cut at
			// the last parenthesis.
			fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
			if len(fields) > 1 && fields[1] == me && fields[0] != "Z" {
				kids = append(kids, pid)
			}
		}
		if len(kids) == 0 || time.Now().After(deadline) {
			return kids
		}
	}
}
