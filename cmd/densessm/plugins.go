package main

import (
	"github.com/spf13/cobra"

	"github.com/densessm/densessm/api"
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
	for _, e := range api.BackendList() {
		if e.Name == name {
			return nil
		}
	}
	if err := discoverPlugins(cmd); err != nil {
		return err
	}
	for _, e := range api.BackendList() {
		if e.Name == name {
			return nil
		}
	}
	_, err := api.NewBackend(name, api.BackendOptions{}) // the error lists the known ones
	return err
}

// findArchitecture makes sure the architecture name (empty: nothing to
// find) is registered, discovering the plugins when it is not built in.
func findArchitecture(cmd *cobra.Command, name string) error {
	if name == "" {
		return nil
	}
	if _, err := api.LookupArchitecture(name); err == nil {
		return nil
	}
	if err := discoverPlugins(cmd); err != nil {
		return err
	}
	_, err := api.LookupArchitecture(name)
	return err
}

// discoverPlugins finds the plugins and registers their architectures and
// backends, once per process.
func discoverPlugins(cmd *cobra.Command) error {
	return nil
}
