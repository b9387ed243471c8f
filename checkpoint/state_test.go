package checkpoint

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
)

// stateFixture is a snapshot of two sequences with tensors whose names
// sort otherwise than their order (layers.10 before layers.2).
func stateFixture() api.StateSnapshot {
	f32 := func(name string, shape api.Shape, base float32) api.HostTensor {
		data := make([]byte, 4*shape.NumElements())
		for i := range shape.NumElements() {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(base+float32(i)/8))
		}
		return api.HostTensor{Name: name, DType: api.F32, Shape: shape, Data: data}
	}
	return api.StateSnapshot{
		Arch: "mamba", ConfigHash: "c0ffee", WeightsHash: "beef", Batch: 2, Tokens: 17,
		Tensors: []api.HostTensor{f32("layers.2.ssm", api.Shape{2, 3, 4}, 1), f32("layers.10.ssm", api.Shape{2, 3, 4}, -1), f32("layers.2.conv", api.Shape{2, 1, 3}, 0)},
	}
}

// TestStateFile writes a snapshot and reads it back: the same identity,
// counts and tensors, in the snapshot's order.
func TestStateFile(t *testing.T) {
	snap := stateFixture()
	path := filepath.Join(t.TempDir(), "s.safetensors")
	if err := WriteState(context.Background(), path, snap); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Arch != snap.Arch || got.ConfigHash != snap.ConfigHash || got.WeightsHash != snap.WeightsHash {
		t.Errorf("identity %q %q %q, want %q %q %q", got.Arch, got.ConfigHash, got.WeightsHash, snap.Arch, snap.ConfigHash, snap.WeightsHash)
	}
	for i, tn := range got.Tensors {
		if tn.Name != snap.Tensors[i].Name {
			t.Fatalf("tensor %d is %q, want %q", i, tn.Name, snap.Tensors[i].Name)
		}
	}
	if d, err := got.MaxDiff(snap); err != nil || d != 0 {
		t.Fatalf("read back: difference %v (%v)", d, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := ReadStateBytes("mem", data); err != nil || b.Tokens != 17 || b.Lens != nil {
		t.Fatalf("ReadStateBytes: %v tokens %d, lens %v", err, b.Tokens, b.Lens)
	}

	// Sequences at different positions keep each one's.
	snap.Lens = []int{17, 9}
	if err := WriteState(context.Background(), path, snap); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadState(path); err != nil || !slices.Equal(got.Lens, snap.Lens) {
		t.Fatalf("lens read back %v (%v), want %v", got.Lens, err, snap.Lens)
	}
}

// TestStateFileRefused checks that files that are not state files, or
// whose metadata disagrees with their tensors, are refused with the
// right error class.
func TestStateFileRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	snap := stateFixture()
	tensors := make([]NamedTensor, len(snap.Tensors))
	for i, tn := range snap.Tensors {
		tensors[i] = NamedTensor(tn)
	}
	good := map[string]string{
		StateKey: StateVersion, stateArchKey: "mamba", stateBatchKey: "2", stateTokensKey: "17",
		stateOrderKey: `["layers.2.ssm","layers.10.ssm","layers.2.conv"]`,
	}
	cases := []struct {
		name string
		edit func(md map[string]string)
		want error
	}{
		{"a model's weights", func(md map[string]string) { clear(md) }, api.ErrCorrupt},
		{"a later version", func(md map[string]string) { md[StateKey] = "2" }, api.ErrUnsupported},
		{"no batch", func(md map[string]string) { delete(md, stateBatchKey) }, api.ErrCorrupt},
		{"batch 0", func(md map[string]string) { md[stateBatchKey] = "0" }, api.ErrCorrupt},
		{"negative tokens", func(md map[string]string) { md[stateTokensKey] = "-1" }, api.ErrCorrupt},
		{"order not JSON", func(md map[string]string) { md[stateOrderKey] = "layers" }, api.ErrCorrupt},
		{"lens not JSON", func(md map[string]string) { md[stateLensKey] = "17,9" }, api.ErrCorrupt},
		{"lens null", func(md map[string]string) { md[stateLensKey] = "null" }, api.ErrCorrupt},
		{"lens of one sequence", func(md map[string]string) { md[stateLensKey] = "[17]" }, api.ErrCorrupt},
		{"lens past tokens", func(md map[string]string) { md[stateLensKey] = "[17,18]" }, api.ErrCorrupt},
		{"lens short of tokens", func(md map[string]string) { md[stateLensKey] = "[16,9]" }, api.ErrCorrupt},
		{"lens negative", func(md map[string]string) { md[stateLensKey] = "[17,-1]" }, api.ErrCorrupt},
		{"order short", func(md map[string]string) { md[stateOrderKey] = `["layers.2.ssm","layers.10.ssm"]` }, api.ErrCorrupt},
		{"order repeats", func(md map[string]string) {
			md[stateOrderKey] = `["layers.2.ssm","layers.2.ssm","layers.2.conv"]`
		}, api.ErrCorrupt},
		{"order names another", func(md map[string]string) {
			md[stateOrderKey] = `["layers.2.ssm","layers.3.ssm","layers.2.conv"]`
		}, api.ErrCorrupt},
	}
	for _, c := range cases {
		md := map[string]string{}
		for k, v := range good {
			md[k] = v
		}
		c.edit(md)
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
		if err := Write(ctx, path, tensors, md); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadState(path); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want one wrapping %v", c.name, err, c.want)
		}
	}
	if _, err := ReadState(filepath.Join(dir, "missing")); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzReadState reads arbitrary bytes as a state file: an error of the
// corrupt or unsupported class, or a snapshot whose tensors agree with
// their dtypes and shapes, never a panic.
func FuzzReadState(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.safetensors")
	if err := WriteState(context.Background(), path, stateFixture()); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(fixture(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := ReadStateBytes("fuzz", data)
		if err != nil {
			if !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrUnsupported) {
				t.Fatalf("error of an unexpected class: %v", err)
			}
			return
		}
		for _, tn := range snap.Tensors {
			if len(tn.Data) != tn.DType.Bytes(tn.Shape.NumElements()) {
				t.Fatalf("tensor %q: %d bytes for %s%v", tn.Name, len(tn.Data), tn.DType, tn.Shape)
			}
		}
	})
}
