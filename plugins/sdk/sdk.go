// Package sdk serves architectures and backends of this process to a
// densessm host as a plugin: a third party writes a Go package that
// registers an api.Architecture, a main of a few lines,
//
//	package main
//
//	import (
//		"github.com/densessm/densessm/plugins/sdk"
//		_ "example.com/mymodel" // registers "mymodel"
//	)
//
//	func main() {
//		sdk.Serve(sdk.Plugin{Name: "mymodel", Version: "0.1.0", Architectures: []string{"mymodel"}})
//	}
//
// and `go build -o densessm-plugin-mymodel` into a folder on
// DENSESSM_PLUGIN_PATH (or the per-user plugins folder). The host then
// lists the architecture in `densessm archs`, and train, generate, eval
// and the Go API use it like a built-in one (docs/plugins.md).
//
// Serve answers one model-level request at a time per model: the weights
// and recurrent states stay in this process, and the host holds handles.
// Every handler recovers panics into errors, and the process exits when
// its host does.
package sdk

import (
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/densessm/densessm/api"
	_ "github.com/densessm/densessm/backends/cpu" // the default backend of a plugin's models
	"github.com/densessm/densessm/plugins/internal/wire"
)

// Plugin describes what a plugin process serves.
type Plugin struct {
	// Name names the plugin in listings and errors ("hgrn").
	Name string
	// Version is the plugin's own version ("0.1.0").
	Version string
	// Architectures are the registered names of the architectures served.
	Architectures []string
	// Backends are the registered names of the backends models may be
	// built on; empty means "cpu". A backend listed here that the host
	// does not have (a CUDA backend, or "cpu-plugin" for the CPU backend
	// served out of process) becomes selectable with --backend on the host.
	Backends []string
}

// Check reports a description that cannot be served: no name, an
// architecture or backend that is not registered in this process.
func (p Plugin) Check() error {
	if p.Name == "" {
		return fmt.Errorf("sdk: the plugin has no name: %w", api.ErrConfig)
	}
	for _, a := range p.Architectures {
		if _, err := api.LookupArchitecture(a); err != nil {
			return fmt.Errorf("sdk: plugin %s: %w", p.Name, err)
		}
	}
	for _, b := range p.backends() {
		if !slices.Contains(api.Backends(), b) {
			return fmt.Errorf("sdk: plugin %s: backend %q is not registered (known: %v): %w", p.Name, b, api.Backends(), api.ErrNotFound)
		}
	}
	return nil
}

func (p Plugin) backends() []string {
	if len(p.Backends) == 0 {
		return []string{"cpu"}
	}
	return p.Backends
}

// Serve serves p to the host that started this process and returns when
// the host goes away. Started by hand, it prints that it is a plugin and
// exits with status 1. A description that cannot be served exits with
// status 1 and the reason on stderr.
func Serve(p Plugin) {
	if err := p.Check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go exitWithParent(os.Getppid())
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.Plugins(newServer(p)),
		GRPCServer:       NewGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: p.Name, Output: os.Stderr, Level: hclog.Warn, JSONFormat: true,
		}),
	})
}

// gcPercent is a plugin process's GOGC unless the environment sets one:
// the densessm CLI's setting (GCPercent in internal/cli explains it),
// since a model's weights are most of the live heap here too.
const gcPercent = 25

// NewGRPCServer is the gRPC server of a plugin process: messages up to
// wire.MaxMessage, panics in handlers recovered into errors, and errors
// carrying their api kind in a trailer.
func NewGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.MaxRecvMsgSize(wire.MaxMessage),
		grpc.MaxSendMsgSize(wire.MaxMessage),
		grpc.InitialWindowSize(wire.Window),
		grpc.InitialConnWindowSize(wire.Window),
		grpc.WriteBufferSize(wire.Buffer),
		grpc.ReadBufferSize(wire.Buffer),
		grpc.ChainUnaryInterceptor(unaryErrors),
		grpc.ChainStreamInterceptor(streamErrors),
	)
	return grpc.NewServer(opts...)
}

// exitWithParent ends the process when its parent, the host, has gone
// (the process is re-parented), so that no plugin outlives its host even
// when the host is killed outright.
func exitWithParent(parent int) {
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != parent {
			os.Exit(0)
		}
	}
}

// stack returns the stack of a recovered panic, for the log.
func stack() string { return string(debug.Stack()) }
