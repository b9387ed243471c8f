package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/densessm/densessm/api"
)

// faultyModel builds a tiny model of the fault plugin's architecture.
func faultyModel(t *testing.T, p *Plugin) api.Model {
	t.Helper()
	a := p.Architecture("faulty")
	cfg, err := a.ParseConfig([]byte(tinyConfigs["mamba"]))
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.New(t.Context(), cfg, api.BuildOptions{BackendOptions: api.BackendOptions{Threads: 1}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFaultsInCalls: a plugin that crashes, hangs or panics in Forward (a
// gRPC call), Step (a frame on the step socket), SaveState (a stream from
// the plugin) or LoadState (a stream to it) gives an error naming it
// within the deadline, the host goes on working (the next model starts a
// fresh process), and no process is left behind.
func TestFaultsInCalls(t *testing.T) {
	for _, tc := range []struct {
		fault string
		want  error  // what the error wraps
		says  string // what it says
	}{
		{"crash", api.ErrInternal, "exited or crashed"},
		{"hang", context.DeadlineExceeded, "no answer within 2s"},
		{"panic", api.ErrInternal, "index out of range"},
		{"crash-step", api.ErrInternal, "exited or crashed"},
		{"hang-step", context.DeadlineExceeded, "no answer within 2s"},
		{"panic-step", api.ErrInternal, "index out of range"},
		{"crash-save", api.ErrInternal, "exited or crashed"},
		{"hang-save", context.DeadlineExceeded, "no answer within 2s"},
		{"panic-save", api.ErrInternal, "index out of range"},
		{"crash-load", api.ErrInternal, "exited or crashed"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			t.Setenv("DENSESSM_FAULT", tc.fault)
			opts := testOptions(t)
			opts.CallTimeout = 2 * time.Second
			p := openPlugin(t, "densessm-plugin-faulty", opts)
			m := faultyModel(t, p)
			s, err := m.NewState(1)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			switch {
			case strings.HasSuffix(tc.fault, "-step"):
				_, err = m.Step(t.Context(), s, []int32{1})
			case strings.HasSuffix(tc.fault, "-save"):
				_, err = m.(api.StateSaver).SaveState(t.Context(), s)
			case strings.HasSuffix(tc.fault, "-load"):
				err = m.(api.StateSaver).LoadState(t.Context(), s, api.StateSnapshot{Batch: 1})
			default:
				_, err = m.Forward(t.Context(), [][]int32{{1, 2, 3}}, api.Form{})
			}
			took := time.Since(start)
			if err == nil || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "faulty") || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%s: %v; want an error naming the plugin, saying %q, wrapping %v", tc.fault, err, tc.says, tc.want)
			}
			if took > opts.CallTimeout+3*time.Second {
				t.Errorf("the error took %v", took)
			}
			// The host goes on: a new model (in a new process, when the
			// old one was stopped) decodes.
			// (Forward after a fault elsewhere, and Step after one in
			// Forward: a call that does not misbehave.)
			again := faultyModel(t, p)
			if strings.Contains(tc.fault, "-") {
				_, err = again.Forward(t.Context(), [][]int32{{1, 2}}, api.Form{})
			} else {
				_, err = again.Step(t.Context(), mustState(t, again), []int32{1})
			}
			if err != nil {
				t.Fatalf("after the fault: %v", err)
			}
			// The first model is gone with its process, or still there
			// after a panic; either way its calls answer.
			if _, err := m.NewState(1); !strings.HasPrefix(tc.fault, "panic") && !errors.Is(err, api.ErrNotFound) {
				t.Errorf("a model of the stopped process: %v, want not found", err)
			}
			p.Close()
			if kids := children(t); len(kids) != 0 {
				t.Errorf("processes left behind: %v", kids)
			}
		})
	}
}

func mustState(t *testing.T, m api.Model) api.State {
	t.Helper()
	s, err := m.NewState(1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFaultsAtStart: a plugin that writes to stdout, speaks another
// protocol version, or whose checksum the lock file does not pin, is
// refused with an error saying why, and leaves no process behind.
func TestFaultsAtStart(t *testing.T) {
	dir := pluginDir(t)
	path := filepath.Join(dir, "densessm-plugin-faulty")
	for _, tc := range []struct {
		name, fault string
		lock        func(t *testing.T) string // writes a lock file
		says        string
		want        error
	}{
		{name: "stdout", fault: "stdout", says: "on stdout", want: api.ErrCorrupt},
		{name: "version", fault: "version", says: "another version of the plugin protocol", want: api.ErrUnsupported},
		{name: "checksum", lock: func(t *testing.T) string {
			f := filepath.Join(t.TempDir(), "plugins.lock")
			os.WriteFile(f, []byte(`{"version": 1, "plugins": {"`+path+`": "`+strings.Repeat("00", 32)+`"}}`), 0o644)
			return f
		}, says: "lock file", want: api.ErrCorrupt},
		{name: "unlisted", lock: func(t *testing.T) string {
			f := filepath.Join(t.TempDir(), "plugins.lock")
			os.WriteFile(f, []byte(`{"version": 1, "plugins": {}}`), 0o644)
			return f
		}, says: "not in the lock file", want: api.ErrConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DENSESSM_FAULT", tc.fault)
			opts := testOptions(t)
			if tc.lock != nil {
				opts.LockFile = tc.lock(t)
			}
			_, err := Open(t.Context(), path, opts)
			if err == nil || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "densessm-plugin-faulty") {
				t.Fatalf("open: %v; want an error naming the plugin, saying %q, wrapping %v", err, tc.says, tc.want)
			}
			if kids := children(t); len(kids) != 0 {
				t.Errorf("processes left behind: %v", kids)
			}
		})
	}
}

// TestLockAccepts: a lock file written by WriteLock lets the plugins it
// pins run.
func TestLockAccepts(t *testing.T) {
	dir := pluginDir(t)
	paths, err := Find([]string{dir})
	if err != nil || len(paths) != 2 {
		t.Fatalf("find: %v, %v", paths, err)
	}
	opts := testOptions(t)
	if _, err := WriteLock(opts.LockFile, paths); err != nil {
		t.Fatal(err)
	}
	p := openPlugin(t, "densessm-backend-cpu", opts)
	if p.Desc.Name != "cpu" || p.pid(p.gen) == 0 {
		t.Errorf("described %+v, pid %d", p.Desc, p.pid(p.gen))
	}
	t.Logf("large results read from the plugin's memory: %v", p.remote)
}

// TestCatalogRegisters: Discover and Register make the fault plugin's
// architecture and the CPU plugin's backend available through the api
// registry, marked as the plugins'.
func TestCatalogRegisters(t *testing.T) {
	t.Setenv("DENSESSM_FAULT", "")
	c, err := Discover(t.Context(), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Plugins) != 2 || len(c.Failed) != 0 {
		t.Fatalf("%d plugins, failed: %v", len(c.Plugins), c.Failed)
	}
	if errs := c.Register(); len(errs) != 0 {
		t.Fatal(errs)
	}
	found := false
	for _, e := range api.ArchitectureList() {
		if e.Name == "faulty" {
			found = e.Plugin == "faulty"
		}
	}
	if !found {
		t.Errorf("faulty is not listed as the plugin's: %v", api.ArchitectureList())
	}
	a, err := api.ArchitectureOn("densemamba", "cpu-plugin")
	if err != nil {
		t.Fatal(err)
	}
	if _, remote := a.(*Architecture); !remote {
		t.Errorf("densemamba on cpu-plugin is %T, want the plugin's", a)
	}
	if _, err := api.ArchitectureOn("faulty", "cpu-plugin"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("an architecture the backend's plugin does not serve: %v", err)
	}
}
