package api

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// BackendFactory constructs a backend.
type BackendFactory func(BackendOptions) (Backend, error)

var registry struct {
	sync.RWMutex
	archs    map[string]Architecture
	plugins  map[string]string // architecture name -> plugin serving it
	backends map[string]BackendFactory
	remote   map[string]remoteBackend // backends served by plugins
}

// remoteBackend is a backend that lives in a plugin process: models on it
// are built there, by the plugin's proxy architectures.
type remoteBackend struct {
	plugin string
	arch   func(name string) (Architecture, error)
}

// RegisterArchitecture makes arch available under arch.Name(). It is called
// from the init function of the architecture's package, so that a blank
// import enables it. It panics on an empty or duplicate name.
func RegisterArchitecture(arch Architecture) {
	name := arch.Name()
	registry.Lock()
	defer registry.Unlock()
	if name == "" {
		panic("api: RegisterArchitecture with an empty name")
	}
	if _, dup := registry.archs[name]; dup {
		panic("api: RegisterArchitecture called twice for " + name)
	}
	if registry.archs == nil {
		registry.archs = map[string]Architecture{}
	}
	registry.archs[name] = arch
}

// RegisterPluginArchitecture makes arch, a proxy for an architecture that
// the plugin named plugin serves, available under arch.Name(), marked as
// the plugin's (see ArchitectureList). Unlike RegisterArchitecture it is
// called at run time, when plugins are discovered, and returns an error
// wrapping ErrConfig when the name is taken.
func RegisterPluginArchitecture(arch Architecture, plugin string) error {
	name := arch.Name()
	registry.Lock()
	defer registry.Unlock()
	if name == "" {
		return fmt.Errorf("plugin %s: an architecture with an empty name: %w", plugin, ErrConfig)
	}
	if _, dup := registry.archs[name]; dup {
		if by := registry.plugins[name]; by != "" {
			return fmt.Errorf("plugin %s: architecture %q is served by plugin %s already: %w", plugin, name, by, ErrConfig)
		}
		return fmt.Errorf("plugin %s: architecture %q is built in: %w", plugin, name, ErrConfig)
	}
	if registry.archs == nil {
		registry.archs = map[string]Architecture{}
	}
	if registry.plugins == nil {
		registry.plugins = map[string]string{}
	}
	registry.archs[name] = arch
	registry.plugins[name] = plugin
	return nil
}

// ArchitectureEntry is one registered architecture: its name, and the
// plugin that serves it (empty for a built-in one).
type ArchitectureEntry struct {
	Name   string
	Plugin string
}

// ArchitectureList returns every registered architecture, sorted by name.
func ArchitectureList() []ArchitectureEntry {
	registry.RLock()
	defer registry.RUnlock()
	var out []ArchitectureEntry
	for _, name := range sortedKeys(registry.archs) {
		out = append(out, ArchitectureEntry{Name: name, Plugin: registry.plugins[name]})
	}
	return out
}

// LookupArchitecture returns the architecture registered under name, or an
// error wrapping ErrNotFound that lists the known names.
func LookupArchitecture(name string) (Architecture, error) {
	registry.RLock()
	defer registry.RUnlock()
	if a, ok := registry.archs[name]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("architecture %q (known: %v): %w", name, sortedKeys(registry.archs), ErrNotFound)
}

// Architectures returns the registered architecture names, sorted.
func Architectures() []string {
	registry.RLock()
	defer registry.RUnlock()
	return sortedKeys(registry.archs)
}

// RegisterBackend makes a backend constructor available under name. It is
// called from the init function of the backend's package. It panics on an
// empty or duplicate name or a nil factory.
func RegisterBackend(name string, factory BackendFactory) {
	registry.Lock()
	defer registry.Unlock()
	if name == "" || factory == nil {
		panic("api: RegisterBackend with an empty name or nil factory")
	}
	if _, dup := registry.backends[name]; dup {
		panic("api: RegisterBackend called twice for " + name)
	}
	if registry.backends == nil {
		registry.backends = map[string]BackendFactory{}
	}
	registry.backends[name] = factory
}

// NewBackend constructs the backend registered under name.
func NewBackend(name string, opts BackendOptions) (Backend, error) {
	registry.RLock()
	f, ok := registry.backends[name]
	known := sortedKeys(registry.backends)
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("backend %q (known: %v): %w", name, known, ErrNotFound)
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("backend %q: %w", name, err)
	}
	b, err := f(opts)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", name, err)
	}
	return b, nil
}

// Backends returns the registered in-process backend names, sorted.
func Backends() []string {
	registry.RLock()
	defer registry.RUnlock()
	return sortedKeys(registry.backends)
}

// RegisterPluginBackend makes the backend name, which lives in the process
// of the plugin named plugin, selectable: a model on it is built by the
// architecture arch returns for the model's architecture name (a proxy
// that forwards to the plugin). It returns an error wrapping ErrConfig
// when the name is taken.
func RegisterPluginBackend(name, plugin string, arch func(name string) (Architecture, error)) error {
	registry.Lock()
	defer registry.Unlock()
	if name == "" || arch == nil {
		return fmt.Errorf("plugin %s: a backend with an empty name or no architectures: %w", plugin, ErrConfig)
	}
	if _, dup := registry.backends[name]; dup {
		return fmt.Errorf("plugin %s: backend %q is built in: %w", plugin, name, ErrConfig)
	}
	if r, dup := registry.remote[name]; dup {
		return fmt.Errorf("plugin %s: backend %q is served by plugin %s already: %w", plugin, name, r.plugin, ErrConfig)
	}
	if registry.remote == nil {
		registry.remote = map[string]remoteBackend{}
	}
	registry.remote[name] = remoteBackend{plugin: plugin, arch: arch}
	return nil
}

// BackendEntry is one backend: its name, and the plugin whose process it
// lives in (empty for an in-process backend).
type BackendEntry struct {
	Name   string
	Plugin string
}

// BackendList returns every backend, in process and in plugins, sorted by
// name.
func BackendList() []BackendEntry {
	registry.RLock()
	defer registry.RUnlock()
	var out []BackendEntry
	for _, name := range sortedKeys(registry.backends) {
		out = append(out, BackendEntry{Name: name})
	}
	for _, name := range sortedKeys(registry.remote) {
		out = append(out, BackendEntry{Name: name, Plugin: registry.remote[name].plugin})
	}
	slices.SortFunc(out, func(a, b BackendEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ArchitectureOn returns the architecture that builds models of arch on
// the backend named backend ("cpu" when empty): the registered one, or for
// a backend in a plugin process, the plugin's proxy for arch.
func ArchitectureOn(arch, backend string) (Architecture, error) {
	registry.RLock()
	r, remote := registry.remote[backend]
	registry.RUnlock()
	if remote {
		a, err := r.arch(arch)
		if err != nil {
			return nil, fmt.Errorf("backend %s (plugin %s): %w", backend, r.plugin, err)
		}
		return a, nil
	}
	return LookupArchitecture(arch)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
