package pybind

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
	"github.com/densessm/densessm/checkpoint"
)

// stepState feeds one token to each sequence of s and returns a copy of
// the logits.
func stepState(t *testing.T, s *State, ids ...int32) []float32 {
	t.Helper()
	var out []float32
	err := s.use(func(am api.Model, st api.State) error {
		l, err := am.Step(context.Background(), st, ids)
		if err == nil {
			out = slices.Clone(api.Float32s(l))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// prefillState runs seqs through s.
func prefillState(t *testing.T, s *State, seqs ...[]int32) {
	t.Helper()
	err := s.use(func(am api.Model, st api.State) error {
		_, err := am.Prefill(context.Background(), st, seqs, api.Form{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func stateLen(t *testing.T, s *State) int {
	t.Helper()
	n, err := s.Len()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStateFileAndCopy saves a state to a file, loads it into a new state
// (of the same model and of another instance of it) and checks that each
// continues with the original's logits bit for bit, that a copy branches
// off independently, and that the identity is computed once.
func TestStateFileAndCopy(t *testing.T) {
	m := newMamba(t, 300, 16, 1)
	defer m.Close()
	s, err := m.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	prefillState(t, s, []int32{1, 2, 3, 4, 5}, []int32{6, 7, 8, 9, 10})
	stepState(t, s, 11, 12)
	path := filepath.Join(t.TempDir(), "state.safetensors")
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	if m.id == nil || m.id.Arch != "mamba" || len(m.id.WeightsHash) != 64 {
		t.Fatalf("identity after Save: %+v", m.id)
	}
	loaded, err := m.LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	twin := newMamba(t, 300, 16, 1) // the same seed: the same weights
	defer twin.Close()
	fromTwin, err := twin.LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	branch, err := s.Copy()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*State{loaded, fromTwin, branch} {
		if l.Batch() != 2 || stateLen(t, l) != 6 {
			t.Fatalf("loaded state of %d sequences at %d tokens, want 2 at 6", l.Batch(), stateLen(t, l))
		}
	}
	stepState(t, branch, 100, 200) // the branch goes elsewhere first
	for i, tok := range []int32{13, 14, 15} {
		want := stepState(t, s, tok, tok+1)
		for j, l := range []*State{loaded, fromTwin} {
			if got := stepState(t, l, tok, tok+1); !slices.Equal(got, want) {
				t.Fatalf("token %d after the restore: state %d's logits differ from the original's", i, j)
			}
		}
	}
	if n := stateLen(t, branch); n != 7 {
		t.Fatalf("branch at %d tokens, want 7", n)
	}
	// The branch is where the original was after its first token and
	// the branch's own, not after the original's.
	ref, err := m.LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	stepState(t, ref, 100, 200)
	if got, want := stepState(t, branch, 5, 6), stepState(t, ref, 5, 6); !slices.Equal(got, want) {
		t.Fatal("the branch did not go on from the copy")
	}
	if err := loaded.Close(); err != nil {
		t.Fatal(err)
	}
	if err := loaded.Save(path); !errors.Is(err, errClosed) {
		t.Errorf("Save of a closed state: %v", err)
	}
}

// TestLoadStateRefusals checks the files LoadState refuses: of another
// model's weights, configuration or architecture (ErrConfig), not state
// files, and with a batch count its tensors cannot hold.
func TestLoadStateRefusals(t *testing.T) {
	m := newMamba(t, 300, 16, 1)
	defer m.Close()
	s, err := m.NewState(1)
	if err != nil {
		t.Fatal(err)
	}
	stepState(t, s, 7)
	dir := t.TempDir()
	path := filepath.Join(dir, "state.safetensors")
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	cfg := `{"model_type":"mamba","vocab_size":300,"hidden_size":16,"num_hidden_layers":2,"state_size":8,"expand":2,"time_step_rank":4}`
	reseeded, err := InitModel("mamba", cfg, "cpu", "", 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer reseeded.Close()
	wider := newMamba(t, 300, 24, 1)
	defer wider.Close()
	retnet, err := InitModel("retnet", "", "cpu", "", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer retnet.Close()
	for _, c := range []struct {
		m    *Model
		want string
	}{{reseeded, "other weights"}, {wider, "another configuration"}, {retnet, "not of this retnet model"}} {
		_, err := c.m.LoadState(path)
		if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("state of another model: %v, want ErrConfig saying %q and the path", err, c.want)
		}
	}

	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not a safetensors file at all"), 0o644)
	if _, err := m.LoadState(garbage); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("garbage: %v, want ErrCorrupt", err)
	}
	if _, err := m.LoadState(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}

	// A file whose batch count says far more sequences than its tensors
	// hold is refused before a state of that many is made.
	var snap api.StateSnapshot
	err = s.use(func(am api.Model, st api.State) (err error) {
		snap, err = api.Snapshot(context.Background(), am, st, *m.id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	snap.Batch = 1 << 40
	huge := filepath.Join(dir, "huge.safetensors")
	if err := checkpoint.WriteState(context.Background(), huge, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := m.LoadState(huge); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("batch 2^40: %v, want ErrCorrupt", err)
	}
	snap.Batch = 3 // small enough to make, wrong for the tensors
	if err := checkpoint.WriteState(context.Background(), huge, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := m.LoadState(huge); err == nil {
		t.Error("batch 3 over tensors of one sequence: loaded")
	}
}

// TestSnapshotBuffer checks the layout of the state's tensors laid end
// to end, and that they are the snapshot's values.
func TestSnapshotBuffer(t *testing.T) {
	m := newMamba(t, 300, 16, 1)
	defer m.Close()
	s, err := m.NewState(1)
	if err != nil {
		t.Fatal(err)
	}
	prefillState(t, s, []int32{3, 1, 4, 1, 5})
	var snap api.StateSnapshot
	err = s.use(func(am api.Model, st api.State) (err error) {
		snap, err = api.Snapshot(context.Background(), am, st, api.StateSnapshot{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	layout, buf, err := snapshotBuffer(snap)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.release()
	if layout.Batch != 1 || layout.Tokens != 5 || len(layout.Tensors) != 4 || layout.Tensors[1].Name != "layers.0.ssm" {
		t.Fatalf("layout %+v", layout)
	}
	nonzero := false
	for i, tt := range layout.Tensors {
		h := snap.Tensors[i]
		if tt.Name != h.Name || !slices.Equal(tt.Shape, h.Shape) {
			t.Fatalf("tensor %d: %+v, snapshot has %s%v", i, tt, h.Name, h.Shape)
		}
		for j := range h.Shape.NumElements() {
			want := math.Float32frombits(binary.LittleEndian.Uint32(h.Data[4*j:]))
			if got := buf.data[tt.Offset+j]; math.Float32bits(got) != math.Float32bits(want) {
				t.Fatalf("%s[%d] = %g, want %g", h.Name, j, got, want)
			}
			nonzero = nonzero || want != 0
		}
	}
	if last := layout.Tensors[3]; last.Offset+api.Shape(last.Shape).NumElements() != len(buf.data) || !nonzero {
		t.Fatalf("the buffer has %d elements (all zero: %v), the layout ends at %d", len(buf.data), !nonzero, last.Offset)
	}
	snap.Tensors[0].DType = api.BF16
	if _, _, err := snapshotBuffer(snap); !errors.Is(err, api.ErrUnsupported) {
		t.Errorf("a bf16 tensor: %v", err)
	}
}
