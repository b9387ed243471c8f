package host

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/densessm/densessm/api"
	pb "github.com/densessm/densessm/plugins/proto"
)

// pluginModel builds a model of a built-in architecture on cpu-plugin.
func pluginModel(t *testing.T, p *Plugin, arch, cfgJSON string, seed int64) *Model {
	t.Helper()
	a := p.Architecture(arch)
	cfg, err := a.ParseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.New(t.Context(), cfg, api.BuildOptions{Backend: "cpu-plugin", BackendOptions: api.BackendOptions{Threads: 2}, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m.(*Model)
}

// stepAll feeds the same tokens to every state and checks that their
// logits are the same, bit for bit.
func stepAll(t *testing.T, m api.Model, tokens [][]int32, states ...api.State) {
	t.Helper()
	for i, next := range tokens {
		var want []float32
		for j, s := range states {
			out, err := m.Step(t.Context(), s, next)
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Clone(api.Float32s(out))
			if j == 0 {
				want = got
			} else if !slices.Equal(got, want) {
				t.Fatalf("step %d: state %d's logits differ from state 0's", i, j)
			}
		}
	}
}

// wantKind checks that err wraps target.
func wantKind(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: %v, want an error wrapping %v", what, err, target)
	}
}

// TestStateSnapshotsThroughPlugin: a state of a built-in architecture
// served by the CPU backend plugin is saved (its batch, length and
// tensors), loaded into a second state, copied (api.CopyState) and
// restored (api.Snapshot, api.Restore), and every one of them continues
// as the original does, bit for bit; snapshots that do not fit, states of
// another model and closed states are refused with their kinds.
func TestStateSnapshotsThroughPlugin(t *testing.T) {
	p := openPlugin(t, "densessm-backend-cpu", testOptions(t))
	ctx := t.Context()
	for _, name := range []string{"mamba", "densemamba", "retnet", "denseretnet"} {
		t.Run(name, func(t *testing.T) {
			m := pluginModel(t, p, name, tinyConfigs[name], 7)
			s, err := m.NewState(2)
			if err != nil {
				t.Fatal(err)
			}
			stepAll(t, m, [][]int32{{1, 2}, {3, 4}, {5, 6}}, s)
			snap, err := m.SaveState(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Batch != 2 || snap.Tokens != 3 || len(snap.Tensors) == 0 || snap.Arch != "" {
				t.Fatalf("snapshot of %d sequences at %d tokens, %d tensors, arch %q; want 2 at 3, tensors, no identity", snap.Batch, snap.Tokens, len(snap.Tensors), snap.Arch)
			}
			for _, h := range snap.Tensors {
				if !strings.HasPrefix(h.Name, "layers.") || h.DType != api.F32 || h.Shape[0] != 2 || len(h.Data) != 4*h.Shape.NumElements() {
					t.Fatalf("state tensor %s %s%v of %d bytes", h.Name, h.DType, h.Shape, len(h.Data))
				}
			}
			loaded, err := m.NewState(2)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.LoadState(ctx, loaded, snap); err != nil {
				t.Fatal(err)
			}
			copied, err := api.CopyState(ctx, m, s)
			if err != nil {
				t.Fatal(err)
			}
			id, err := api.Identity(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			stamped, err := api.Snapshot(ctx, m, s, id)
			if err != nil {
				t.Fatal(err)
			}
			if stamped.Arch != name || stamped.ConfigHash == "" || stamped.WeightsHash == "" {
				t.Errorf("identity %q %q %q", stamped.Arch, stamped.ConfigHash, stamped.WeightsHash)
			}
			restored, err := api.Restore(ctx, m, stamped, id)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range []api.State{loaded, copied, restored} {
				if st.Len() != 3 || st.Batch() != 2 {
					t.Fatalf("a loaded state of %d sequences at %d tokens, want 2 at 3", st.Batch(), st.Len())
				}
			}
			stepAll(t, m, [][]int32{{7, 8}, {9, 10}, {11, 12}}, s, loaded, copied, restored)

			// A branch goes its own way: the original does not move.
			before, err := m.SaveState(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			stepAll(t, m, [][]int32{{13, 14}}, copied)
			after, err := m.SaveState(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if d, err := after.MaxDiff(before); err != nil || d != 0 || after.Tokens != 6 {
				t.Errorf("stepping a copy moved the original (difference %v, %v; at %d tokens)", d, err, after.Tokens)
			}

			// Refusals, with their kinds across the boundary.
			wide, err := m.NewState(3)
			if err != nil {
				t.Fatal(err)
			}
			wantKind(t, "a snapshot of 2 sequences into a state of 3", m.LoadState(ctx, wide, snap), api.ErrShape)
			bad := snap
			bad.Tensors = snap.Tensors[1:]
			wantKind(t, "a snapshot without its first tensor", m.LoadState(ctx, loaded, bad), api.ErrShape)
			bad.Tensors = slices.Clone(snap.Tensors)
			bad.Tensors[0].Name = "layers.0.other"
			wantKind(t, "a tensor of another name", m.LoadState(ctx, loaded, bad), api.ErrShape)
			bad.Tensors = slices.Clone(snap.Tensors)
			bad.Tensors[0].Shape = append(api.Shape{1}, bad.Tensors[0].Shape...)
			wantKind(t, "a tensor of another shape", m.LoadState(ctx, loaded, bad), api.ErrShape)
			bad.Tensors = slices.Clone(snap.Tensors)
			bad.Tensors[0].Data = bad.Tensors[0].Data[4:]
			wantKind(t, "a tensor with too few bytes", m.LoadState(ctx, loaded, bad), api.ErrShape)
			bad = snap
			bad.Tokens = -1
			wantKind(t, "a snapshot at -1 tokens", m.LoadState(ctx, loaded, bad), api.ErrCorrupt)
			if loaded.Len() != 6 {
				t.Errorf("refused loads changed the state's length to %d", loaded.Len())
			}
			stepAll(t, m, [][]int32{{15, 16}}, s, loaded) // and left it as it was

			other := pluginModel(t, p, name, tinyConfigs[name], 8)
			otherState, err := other.NewState(2)
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.SaveState(ctx, otherState)
			wantKind(t, "saving another model's state", err, api.ErrShape)
			wantKind(t, "loading into another model's state", m.LoadState(ctx, otherState, snap), api.ErrShape)
			otherID, err := api.Identity(ctx, other)
			if err != nil {
				t.Fatal(err)
			}
			_, err = api.Restore(ctx, other, stamped, otherID)
			wantKind(t, "restoring into a model with other weights", err, api.ErrConfig)
			wide.Close()
			_, err = m.SaveState(ctx, wide)
			wantKind(t, "saving a closed state", err, api.ErrNotFound)
			wantKind(t, "loading into a closed state", m.LoadState(ctx, wide, snap), api.ErrNotFound)
		})
	}
}

// TestLargeStateThroughPlugin: a state whose tensors are larger than a
// message's pieces (4 MiB) goes whole both ways.
func TestLargeStateThroughPlugin(t *testing.T) {
	p := openPlugin(t, "densessm-backend-cpu", testOptions(t))
	ctx := t.Context()
	m := pluginModel(t, p, "mamba", `{"vocab_size": 64, "hidden_size": 256, "num_hidden_layers": 2, "state_size": 64}`, 3)
	const B = 40 // 40 × 512 × 64 floats: 5.2 MB per layer's SSM state
	s, err := m.NewState(B)
	if err != nil {
		t.Fatal(err)
	}
	tok := func(k int) []int32 {
		out := make([]int32, B)
		for i := range out {
			out[i] = int32((i*7 + k) % 64)
		}
		return out
	}
	stepAll(t, m, [][]int32{tok(0), tok(1)}, s)
	snap, err := m.SaveState(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Bytes() < 10<<20 {
		t.Fatalf("a state of %d bytes, want a large one", snap.Bytes())
	}
	loaded, err := m.NewState(B)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadState(ctx, loaded, snap); err != nil {
		t.Fatal(err)
	}
	again, err := m.SaveState(ctx, loaded)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := again.MaxDiff(snap); err != nil || d != 0 {
		t.Fatalf("the loaded state differs by %v (%v)", d, err)
	}
	stepAll(t, m, [][]int32{tok(2), tok(3)}, s, loaded)
}

// TestStateSnapshotsUnsupported: the fault plugin's model does not save
// its states (it wraps a Mamba model in a type without the methods). The
// host says so without a request, and the plugin too when asked (the
// kind crosses the boundary), also before reading a large stream; a
// plugin built before the requests existed answers "unsupported" too.
func TestStateSnapshotsUnsupported(t *testing.T) {
	t.Setenv("DENSESSM_FAULT", "")
	p := openPlugin(t, "densessm-plugin-faulty", testOptions(t))
	ctx := t.Context()
	m := faultyModel(t, p).(*Model)
	defer m.Close()
	s, err := m.NewState(1)
	if err != nil {
		t.Fatal(err)
	}
	snap := api.StateSnapshot{Batch: 1, Tensors: []api.HostTensor{{Name: "layers.0.ssm", DType: api.F32, Shape: api.Shape{1, 8}, Data: make([]byte, 32)}}}
	check := func(where string) {
		t.Helper()
		_, err := m.SaveState(ctx, s)
		wantKind(t, where+": SaveState", err, api.ErrUnsupported)
		wantKind(t, where+": LoadState", m.LoadState(ctx, s, snap), api.ErrUnsupported)
		_, err = api.CopyState(ctx, m, s)
		wantKind(t, where+": CopyState", err, api.ErrUnsupported)
		_, err = api.Snapshot(ctx, m, s, api.StateSnapshot{})
		wantKind(t, where+": Snapshot", err, api.ErrUnsupported)
	}
	if m.saver {
		t.Fatalf("the plugin says its model saves states")
	}
	check("the host")
	m.saver = true // ask the plugin anyway
	check("the plugin")
	// A large stream (past the transport's 16 MiB window) is refused
	// before the plugin reads it.
	big := snap
	big.Tensors = []api.HostTensor{{Name: "x", DType: api.F32, Shape: api.Shape{1, 10 << 20}, Data: make([]byte, 40<<20)}}
	wantKind(t, "loading 40 MB", m.LoadState(ctx, s, big), api.ErrUnsupported)
	if _, err := m.Step(ctx, s, []int32{1}); err != nil {
		t.Fatalf("a step after the refusals: %v", err)
	}

	// A request the plugin's service does not have (an older plugin).
	err = p.call(ctx, "save state", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		return status.Error(codes.Unimplemented, "method SaveState not implemented")
	})
	wantKind(t, "a request the plugin does not serve", err, api.ErrUnsupported)
	if err == nil || !strings.Contains(err.Error(), "rebuild") {
		t.Errorf("%v does not say to rebuild the plugin", err)
	}
}
