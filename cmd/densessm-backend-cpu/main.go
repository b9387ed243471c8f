// Command densessm-backend-cpu is the CPU backend served out of process: a
// densessm plugin that builds and runs every built-in architecture on a
// backend named "cpu-plugin" (the CPU backend, in the plugin's process).
// It is how the tests exercise the plugin transport, and the shape a
// device backend (CUDA) ships in: the default binary stays pure Go, and a
// backend with native dependencies lives in its own process.
//
// Build it onto the plugin path and select it with --backend:
//
//	go build -o ~/.config/densessm/plugins/ ./cmd/densessm-backend-cpu
//	densessm generate --backend cpu-plugin "func main() {"
package main

import (
	"github.com/densessm/densessm/api"
	_ "github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/architectures/retnet"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/plugins/sdk"
)

// Backend is the name the CPU backend has in this plugin.
const Backend = "cpu-plugin"

// named is the CPU backend under this plugin's backend name, so that models
// report where they run.
type named struct{ *cpu.Backend }

// Name returns "cpu-plugin".
func (named) Name() string { return Backend }

func main() {
	api.RegisterBackend(Backend, func(o api.BackendOptions) (api.Backend, error) { return named{cpu.New(o)}, nil })
	sdk.Serve(sdk.Plugin{
		Name:          "cpu",
		Version:       "1.0.0",
		Architectures: api.Architectures(),
		Backends:      []string{Backend},
	})
}
