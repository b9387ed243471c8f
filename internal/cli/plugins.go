package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/plugins/host"
)

// architecture returns the architecture name builds on --backend: built
// in, or served by a plugin (plugins are looked for when the name or the
// backend is not built in).
func architecture(cmd *cobra.Command, name string) (api.Architecture, error) {
	backend := "cpu"
	if f := cmd.Flag("backend"); f != nil {
		backend = f.Value.String()
	}
	if err := findBackend(cmd, backend); err != nil {
		return nil, err
	}
	if err := findArchitecture(cmd, name); err != nil {
		return nil, err
	}
	return api.ArchitectureOn(name, backend)
}

// findBackend makes sure the backend name is registered, discovering the
// plugins when it is not built in.
func findBackend(cmd *cobra.Command, name string) error {
	return host.FindBackend(name, func() { discoverPlugins(cmd) })
}

// findArchitecture makes sure the architecture name (empty: nothing to
// find) is registered, discovering the plugins when it is not built in.
func findArchitecture(cmd *cobra.Command, name string) error {
	return host.FindArchitecture(name, func() { discoverPlugins(cmd) })
}

// plugins is the catalog of this process's plugins, discovered once, and
// the Main and Execute calls running, which the plugin processes serve.
var plugins struct {
	discover sync.Mutex // held while the plugins are discovered
	found    bool       // discovery has completed (guarded by discover)

	mu      sync.Mutex // guards what follows; stopPlugins holds it
	catalog *host.Catalog
	err     error
	active  int // Main and Execute calls running

	logMu sync.Mutex // guards logs; held while a plugin's log is written
	logs  []*logSink // the stderr of the calls running, in the order they started
}

// logSink is the stderr of a running call, for the plugins' logs.
type logSink struct{ w io.Writer }

// pluginLog is where the plugin processes' logs go: the stderr of the
// most recently started call still running, or nowhere.
type pluginLog struct{}

func (pluginLog) Write(p []byte) (int, error) {
	plugins.logMu.Lock()
	defer plugins.logMu.Unlock()
	if n := len(plugins.logs); n > 0 {
		return plugins.logs[n-1].w.Write(p)
	}
	return len(p), nil
}

// beginPlugins counts a Main or Execute call as running, with stderr for
// the plugins' logs, and returns what ends it: when no other call runs,
// that stops the plugin processes (the catalog stays: a later call starts
// them again as it needs them).
func beginPlugins(stderr io.Writer) (end func()) {
	sink := &logSink{w: stderr}
	plugins.logMu.Lock()
	plugins.logs = append(plugins.logs, sink)
	plugins.logMu.Unlock()
	plugins.mu.Lock()
	plugins.active++
	plugins.mu.Unlock()
	return func() {
		plugins.logMu.Lock()
		plugins.logs = slices.DeleteFunc(plugins.logs, func(s *logSink) bool { return s == sink })
		plugins.logMu.Unlock()
		plugins.mu.Lock()
		defer plugins.mu.Unlock()
		if plugins.active--; plugins.active == 0 && plugins.catalog != nil {
			plugins.catalog.Close()
		}
	}
}

// discoverPlugins finds the plugins and registers their architectures and
// backends, once per process (again when a discovery was cut short by its
// command's context); plugins that fail to start are reported on stderr
// and skipped. It returns the catalog, or the error of a plugin folder
// that could not be read.
func discoverPlugins(cmd *cobra.Command) (*host.Catalog, error) {
	plugins.discover.Lock()
	defer plugins.discover.Unlock()
	if !plugins.found {
		ctx := cmd.Context()
		catalog, err := host.Discover(ctx, host.Options{Log: pluginLog{}})
		if ctx.Err() != nil { // stopping: leave the discovery to the next command
			if catalog != nil {
				catalog.Close()
			}
			return nil, fmt.Errorf("plugins: %w", ctx.Err())
		}
		plugins.mu.Lock()
		plugins.catalog, plugins.err = catalog, err
		plugins.mu.Unlock()
		plugins.found = true
		if err != nil {
			return nil, err // plugins list reports it; elsewhere a name not found says where plugins are looked for
		}
		for _, err := range catalog.Failed {
			fmt.Fprintf(cmd.ErrOrStderr(), "densessm: skipped: %s\n", oneLine(err.Error()))
		}
		for _, err := range catalog.Register() {
			fmt.Fprintf(cmd.ErrOrStderr(), "densessm: skipped: %s\n", oneLine(err.Error()))
		}
	}
	plugins.mu.Lock()
	defer plugins.mu.Unlock()
	return plugins.catalog, plugins.err
}

// stopPlugins stops every plugin process (the catalog stays: a later
// command in the same process starts them again).
func stopPlugins() {
	plugins.mu.Lock()
	defer plugins.mu.Unlock()
	if plugins.catalog != nil {
		plugins.catalog.Close()
	}
}

func newArchsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "archs",
		Short: "List the model architectures, built in and served by plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			discoverPlugins(cmd)
			var lines []string
			for _, e := range api.ArchitectureList() {
				lines = append(lines, marked(e.Name, e.Plugin))
			}
			if len(lines) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no architectures are registered in this build")
			}
			return printLines(cmd.OutOrStdout(), lines)
		},
	}
}

func newBackendsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "backends",
		Short: "List the compute backends, in this program and served by plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			discoverPlugins(cmd)
			var lines []string
			for _, e := range api.BackendList() {
				lines = append(lines, marked(e.Name, e.Plugin))
			}
			return printLines(cmd.OutOrStdout(), lines)
		},
	}
}

// marked is name, followed by "(plugin P)" when a plugin serves it.
func marked(name, plugin string) string {
	if plugin == "" {
		return name
	}
	return fmt.Sprintf("%s\t(plugin %s)", name, plugin)
}

func newPluginsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List and pin the plugins: architectures and backends served by other programs",
		Long: `Plugins are executables named densessm-plugin-* or densessm-backend-* in the
folders on ` + host.PathEnv + ` (separated by colons) and in the per-user
plugins folder. Each runs as a child process that serves whole-model
requests; docs/plugins.md shows how to write one.`,
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the plugins found, with what each serves",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			catalog, err := discoverPlugins(cmd)
			if err != nil {
				return err
			}
			return writePlugins(cmd.OutOrStdout(), catalog, asJSON)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var lockFile string
	lock := &cobra.Command{
		Use:   "lock",
		Short: "Pin the SHA-256 of every plugin found; a plugin that changes afterwards is refused",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := host.Find(host.DefaultDirs())
			if err != nil {
				return err
			}
			l, err := host.WriteLock(lockFile, paths)
			if err != nil {
				return err
			}
			for _, p := range paths {
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", l.Plugins[p], p)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "pinned %d plugins in %s\n", len(paths), lockFile)
			return nil
		},
	}
	lock.Flags().StringVar(&lockFile, "file", host.DefaultLockFile(), "lock file to write")
	cmd.AddCommand(list, lock)
	return cmd
}

// pluginEntry is one plugin in plugins list --json.
type pluginEntry struct {
	Path string `json:"path"`
	host.Description
	Error string `json:"error,omitempty"`
}

func writePlugins(w io.Writer, c *host.Catalog, asJSON bool) error {
	var entries []pluginEntry
	for _, p := range c.Plugins {
		entries = append(entries, pluginEntry{Path: p.Path, Description: p.Desc})
	}
	for _, err := range c.Failed {
		entries = append(entries, pluginEntry{Error: oneLine(err.Error())})
	}
	if asJSON {
		if entries == nil {
			entries = []pluginEntry{}
		}
		return writeJSON(w, entries)
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintf(w, "no plugins found (looked in %s)\n", strings.Join(host.DefaultDirs(), ", "))
		return err
	}
	for _, e := range entries {
		var err error
		if e.Error != "" {
			_, err = fmt.Fprintf(w, "error\t%s\n", e.Error)
		} else {
			_, err = fmt.Fprintf(w, "%s %s\t%s\tarchitectures: %s\tbackends: %s\n", e.Name, e.Version, e.Path,
				strings.Join(e.Architectures, ","), strings.Join(e.Backends, ","))
		}
		if err != nil {
			return err
		}
	}
	return nil
}
