package host

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/densessm/densessm/api"
	pb "github.com/densessm/densessm/plugins/proto"
)

// Architecture is a plugin's architecture seen from the host: an
// api.Architecture whose models are built (New) or loaded (LoadDir) in
// the plugin's process.
type Architecture struct {
	p    *Plugin
	name string
}

var (
	_ api.Architecture = (*Architecture)(nil)
	_ api.DirLoader    = (*Architecture)(nil)
)

// Architecture returns the proxy of the plugin's architecture name.
func (p *Plugin) Architecture(name string) *Architecture { return &Architecture{p: p, name: name} }

// Name returns the architecture's name.
func (a *Architecture) Name() string { return a.name }

// DefaultConfig returns the architecture's default configuration, read
// from the plugin (or the host's own parse of it, for a built-in
// architecture on a plugin's backend). A plugin that cannot answer gives a
// configuration whose Validate returns the error.
func (a *Architecture) DefaultConfig() api.Config {
	cfg, err := a.config(context.Background(), nil)
	if err != nil {
		return &Config{arch: a.name, err: err}
	}
	return cfg
}

// ParseConfig parses a config.json in the plugin.
func (a *Architecture) ParseConfig(configJSON []byte) (api.Config, error) {
	if len(configJSON) == 0 {
		return nil, fmt.Errorf("%s: empty config: %w", a.name, api.ErrConfig)
	}
	return a.config(context.Background(), configJSON)
}

func (a *Architecture) config(ctx context.Context, configJSON []byte) (api.Config, error) {
	var resp *pb.ConfigResponse
	err := a.p.call(ctx, "parse config", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) (err error) {
		resp, err = c.ParseConfig(ctx, &pb.ConfigRequest{Arch: a.name, ConfigJson: configJSON}, o...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return hostConfig(a.name, resp.ConfigJson, int(resp.Vocab))
}

// hostConfig is the host's view of a configuration the plugin wrote: the
// host's own type when the architecture is also built in here (so that
// memory estimates and the like work), else a Config.
func hostConfig(arch string, raw []byte, vocab int) (api.Config, error) {
	if local, err := api.LookupArchitecture(arch); err == nil {
		if _, proxy := local.(*Architecture); !proxy {
			return local.ParseConfig(raw)
		}
	}
	return &Config{arch: arch, raw: raw, vocab: vocab}, nil
}

// New builds a model in the plugin, on the backend opts names (a backend
// object of this process cannot cross: its name and threads are used).
func (a *Architecture) New(ctx context.Context, cfg api.Config, opts api.BuildOptions) (api.Model, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %v: %w", a.name, err, api.ErrConfig)
	}
	req := &pb.BuildRequest{Arch: a.name, ConfigJson: raw, Build: buildOptions(opts)}
	var info *pb.ModelInfo
	gen, err := a.p.callGen(ctx, 0, "build "+a.name, func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) (err error) {
		info, err = c.Build(ctx, req, o...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return newModel(a.p, gen, info)
}

// LoadDir loads a model directory in the plugin's process, which maps the
// weights itself.
func (a *Architecture) LoadDir(ctx context.Context, dir string, opts api.DirLoadOptions) (api.Model, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	req := &pb.LoadRequest{Dir: abs, Arch: a.name, Build: buildOptions(opts.Build), AllowExtra: opts.AllowExtra, AllowNonfinite: opts.AllowNonFinite}
	var info *pb.ModelInfo
	gen, err := a.p.callGen(ctx, 0, "load "+dir, func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) (err error) {
		info, err = c.Load(ctx, req, o...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return newModel(a.p, gen, info)
}

func buildOptions(o api.BuildOptions) *pb.BuildOptions {
	threads := o.BackendOptions.Threads
	if o.On != nil {
		threads = o.On.Threads()
	}
	out := &pb.BuildOptions{Backend: o.BackendName(), Threads: int64(threads), MaxMemory: o.BackendOptions.MaxMemory, Seed: o.Seed, Zeros: o.Zeros}
	if o.Weights != api.Invalid {
		out.Weights = o.Weights.String()
	}
	return out
}

// Config is the configuration of a plugin's architecture that the host
// does not know: the JSON the plugin wrote, and what api.Config asks.
type Config struct {
	arch  string
	raw   json.RawMessage
	vocab int
	err   error
}

// ArchName returns the architecture's name.
func (c *Config) ArchName() string { return c.arch }

// Vocab returns the vocabulary size the plugin reported.
func (c *Config) Vocab() int { return c.vocab }

// Validate returns the error met while reading the configuration (the
// plugin validated it when it parsed it).
func (c *Config) Validate() error { return c.err }

// MarshalJSON returns the configuration as the plugin wrote it.
func (c *Config) MarshalJSON() ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	return c.raw, nil
}
