// Command faultplugin is a plugin that misbehaves on purpose, for the
// host's fault tests. It serves the architecture "faulty" (Mamba, with
// Forward replaced by the fault) and does what DENSESSM_FAULT says:
//
//	crash    exit with status 3 in the middle of Forward
//	hang     sleep in Forward for an hour
//	panic    panic in Forward
//	crash-step, hang-step, panic-step   the same in Step
//	crash-save, hang-save, panic-save   the same in SaveState
//	crash-load                          exit in LoadState
//	stdout   write junk to stdout before the handshake
//	version  speak protocol version 2
//	unpacked serve a trainable model that does not take packed batches
//	         (Info.Packed false, as from a plugin built before them)
//	(empty)  behave
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/architectures/mamba"
	_ "github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/plugins/internal/wire"
	"github.com/densessm/densessm/plugins/sdk"
)

// faultArch is Mamba under another name, building faultModels: models
// that do not save their states (api.StateSaver), except under the faults
// in SaveState and LoadState.
type faultArch struct{ api.Architecture }

func (faultArch) Name() string { return "faulty" }

func (a faultArch) New(ctx context.Context, cfg api.Config, o api.BuildOptions) (api.Model, error) {
	m, err := a.Architecture.New(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	if os.Getenv("DENSESSM_FAULT") == "unpacked" {
		return unpackedModel{m.(api.Trainable)}, nil
	}
	if f := os.Getenv("DENSESSM_FAULT"); strings.HasSuffix(f, "-save") || strings.HasSuffix(f, "-load") {
		return saverModel{faultModel{m}, m.(api.StateSaver)}, nil
	}
	return faultModel{m}, nil
}

// saverModel is a faultModel that saves and loads its states, misbehaving
// as it does.
type saverModel struct {
	faultModel
	sv api.StateSaver
}

func (m saverModel) SaveState(ctx context.Context, s api.State) (api.StateSnapshot, error) {
	misbehave("-save", s.Batch())
	return m.sv.SaveState(ctx, s)
}

func (m saverModel) LoadState(ctx context.Context, s api.State, snap api.StateSnapshot) error {
	misbehave("-load", s.Batch())
	return m.sv.LoadState(ctx, s, snap)
}

// unpackedModel is a Mamba model that trains and does not take packed
// batches: Info.Packed false.
type unpackedModel struct{ api.Trainable }

func (m unpackedModel) Info() api.Info {
	info := m.Trainable.Info()
	info.Packed = false
	return info
}

// faultModel is a Mamba model whose Forward misbehaves.
type faultModel struct{ api.Model }

func (m faultModel) Forward(ctx context.Context, ids [][]int32, f api.Form) (api.Tensor, error) {
	misbehave("", len(ids))
	return m.Model.Forward(ctx, ids, f)
}

func (m faultModel) Step(ctx context.Context, s api.State, ids []int32) (api.Tensor, error) {
	misbehave("-step", len(ids))
	return m.Model.Step(ctx, s, ids)
}

// misbehave does what DENSESSM_FAULT says for the call whose faults end
// with suffix.
func misbehave(suffix string, n int) {
	switch os.Getenv("DENSESSM_FAULT") {
	case "crash" + suffix:
		os.Exit(3)
	case "hang" + suffix:
		time.Sleep(time.Hour)
	case "panic" + suffix:
		var table []int
		_ = table[n+5] // an index out of range, as a bug would
	}
}

func main() {
	base, err := api.LookupArchitecture(mamba.NameMamba)
	if err != nil {
		panic(err)
	}
	api.RegisterArchitecture(faultArch{base})
	p := sdk.Plugin{Name: "faulty", Version: "0.0.1", Architectures: []string{"faulty"}}
	switch os.Getenv("DENSESSM_FAULT") {
	case "stdout":
		fmt.Println("hello from a plugin that prints")
	case "version":
		server, err := sdk.NewServer(p)
		if err != nil {
			panic(err)
		}
		h := wire.Handshake
		h.ProtocolVersion = wire.ProtocolVersion + 1
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  h,
			VersionedPlugins: map[int]plugin.PluginSet{int(h.ProtocolVersion): wire.Plugins(server)[wire.ProtocolVersion]},
			GRPCServer:       sdk.NewGRPCServer,
		})
		return
	}
	sdk.Serve(p)
}
