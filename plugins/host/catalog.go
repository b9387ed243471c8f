package host

import (
	"context"
	"fmt"
	"slices"

	"github.com/densessm/densessm/api"
)

// Catalog is the plugins found on the plugin path, started and described.
type Catalog struct {
	// Plugins are the plugins that started.
	Plugins []*Plugin
	// Failed are the plugins that did not, each error naming its file.
	Failed []error
}

// Discover finds the plugins in opts.Dirs and opens each. A plugin that
// fails to open is reported in Failed, not as the error, which is only
// for a folder that cannot be read.
func Discover(ctx context.Context, opts Options) (*Catalog, error) {
	opts = opts.withDefaults()
	paths, err := Find(opts.Dirs)
	if err != nil {
		return nil, err
	}
	c := &Catalog{}
	for _, path := range paths {
		p, err := Open(ctx, path, opts)
		if err != nil {
			c.Failed = append(c.Failed, err)
			continue
		}
		c.Plugins = append(c.Plugins, p)
	}
	return c, nil
}

// Register adds what the plugins serve to the api registry: each
// architecture that is not built in (marked as the plugin's), and each
// backend that is not in this process (its models are built by the
// plugin). Names another plugin took first are reported, not registered.
func (c *Catalog) Register() []error {
	var errs []error
	for _, p := range c.Plugins {
		for _, a := range p.Desc.Architectures {
			if _, err := api.LookupArchitecture(a); err == nil {
				continue // built in, or registered by an earlier plugin
			}
			if err := api.RegisterPluginArchitecture(p.Architecture(a), p.Desc.Name); err != nil {
				errs = append(errs, err)
			}
		}
		for _, b := range p.Desc.Backends {
			if slices.Contains(api.Backends(), b) {
				continue // this process has its own
			}
			err := api.RegisterPluginBackend(b, p.Desc.Name, func(name string) (api.Architecture, error) {
				if !slices.Contains(p.Desc.Architectures, name) {
					return nil, fmt.Errorf("plugin %s serves no architecture %q (it serves %v): %w", p, name, p.Desc.Architectures, api.ErrNotFound)
				}
				return p.Architecture(name), nil
			})
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// Close stops every plugin process.
func (c *Catalog) Close() {
	for _, p := range c.Plugins {
		p.Close()
	}
}

// FindBackend makes sure the backend name is registered: built in, or
// served by a plugin, calling discover (which finds and registers the
// plugins) when it is not known yet. The error lists the known backends
// and says where plugins are looked for.
func FindBackend(name string, discover func()) error {
	known := func() bool {
		return slices.ContainsFunc(api.BackendList(), func(e api.BackendEntry) bool { return e.Name == name })
	}
	if known() {
		return nil
	}
	if discover(); known() {
		return nil
	}
	var names []string
	for _, e := range api.BackendList() {
		names = append(names, e.Name)
	}
	return fmt.Errorf("backend %q (known: %v; plugins are looked for on %s and in %s): %w", name, names, PathEnv, UserDir(), api.ErrNotFound)
}

// FindArchitecture makes sure the architecture name (empty: nothing to
// find) is registered, calling discover when it is not built in.
func FindArchitecture(name string, discover func()) error {
	if name == "" {
		return nil
	}
	if _, err := api.LookupArchitecture(name); err == nil {
		return nil
	}
	discover()
	_, err := api.LookupArchitecture(name)
	return err
}
