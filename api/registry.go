package api

import (
	"fmt"
	"slices"
	"sync"
)

// BackendFactory constructs a backend.
type BackendFactory func(BackendOptions) (Backend, error)

var registry struct {
	sync.RWMutex
	archs    map[string]Architecture
	backends map[string]BackendFactory
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

// Backends returns the registered backend names, sorted.
func Backends() []string {
	registry.RLock()
	defer registry.RUnlock()
	return sortedKeys(registry.backends)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
