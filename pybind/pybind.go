package pybind

import (
	"context"
	"encoding/json"
	"os"
	"runtime/debug"
	"sync"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/internal/cli"
	"github.com/densessm/densessm/plugins/host"
)

func init() {
	// As the densessm command runs (see cli.GCPercent): a model's weights
	// are most of the live heap, and at Go's default a forward pass's dead
	// activations would pile up to their size between collections.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cli.GCPercent)
	}
}

// Version returns what `densessm version` prints.
func Version() string { return version() }

// version reads the build information once.
var version = sync.OnceValue(cli.Version)

// registered is an entry of Architectures and Backends.
type registered struct {
	Name   string `json:"name"`
	Plugin string `json:"plugin,omitempty"`
}

// Architectures returns the model architectures, built in and served by
// plugins (which it looks for once), as a JSON array of {"name",
// "plugin"}.
func Architectures() string {
	discoverPlugins()
	return registryJSON(api.ArchitectureList(), func(e api.ArchitectureEntry) registered { return registered{e.Name, e.Plugin} })
}

// Backends returns the compute backends, built in and served by plugins,
// as a JSON array of {"name", "plugin"}.
func Backends() string {
	discoverPlugins()
	return registryJSON(api.BackendList(), func(e api.BackendEntry) registered { return registered{e.Name, e.Plugin} })
}

// registryJSON returns the JSON array of a registry's entries.
func registryJSON[E any](entries []E, f func(E) registered) string {
	out := make([]registered, len(entries))
	for i, e := range entries {
		out[i] = f(e)
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// plugins is this process's plugin catalog, discovered once.
var plugins struct {
	once     sync.Once
	catalog  *host.Catalog
	warnings []string
}

// discoverPlugins finds the plugins (DENSESSM_PLUGIN_PATH, the per-user
// folder) and registers what they serve, once per process. Plugins that
// fail to start are skipped; PluginWarnings says why.
func discoverPlugins() {
	plugins.once.Do(func() {
		catalog, err := host.Discover(context.Background(), host.Options{Log: os.Stderr})
		if err != nil {
			plugins.warnings = append(plugins.warnings, err.Error())
			return
		}
		plugins.catalog = catalog
		for _, err := range catalog.Failed {
			plugins.warnings = append(plugins.warnings, err.Error())
		}
		for _, err := range catalog.Register() {
			plugins.warnings = append(plugins.warnings, err.Error())
		}
	})
}

// PluginWarnings returns, as a JSON array of strings, why plugins were
// skipped when they were looked for.
func PluginWarnings() string {
	discoverPlugins()
	b, _ := json.Marshal(append([]string{}, plugins.warnings...))
	return string(b)
}

// findArchitecture makes sure the architecture name is registered,
// looking for plugins when it is not built in.
func findArchitecture(name string) error { return host.FindArchitecture(name, discoverPlugins) }

// findBackend makes sure the backend name is registered, looking for
// plugins when it is not built in.
func findBackend(name string) error { return host.FindBackend(name, discoverPlugins) }
