package pybind

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

// State snapshots (api.StateSaver): state files, copies, and the state's
// tensors as one Arrow array.

// stateIdentity returns the identity stamped on the model's state files
// and checked when one is loaded (api.Identity: the architecture and the
// SHA-256 of the configuration and of the weights). It is computed the
// first time and kept, since it reads every weight: nothing in this
// package changes a model's weights once it is built (training runs on
// directories, through Run), so it stays right; a method that changed them
// would have to reset m.id. Call it inside m.use.
func (m *Model) stateIdentity(ctx context.Context, am api.Model) (api.StateSnapshot, error) {
	if m.id != nil {
		return *m.id, nil
	}
	if !am.Info().Snapshots { // before reading every weight for nothing
		return api.StateSnapshot{}, fmt.Errorf("%s model: state snapshots: %w", am.Config().ArchName(), api.ErrUnsupported)
	}
	id, err := api.Identity(ctx, am)
	if err != nil {
		return api.StateSnapshot{}, fmt.Errorf("state identity: %w", err)
	}
	m.id = &id
	return id, nil
}

// stateIdentityJSON is Identify's result.
type stateIdentityJSON struct {
	Arch          string `json:"arch"`
	ConfigSHA256  string `json:"config_sha256"`
	WeightsSHA256 string `json:"weights_sha256"`
}

// Identify starts a job that computes the identity of the model's state
// files (the architecture and the SHA-256 of its configuration and of its
// weights) unless it is known already, and returns it as {"arch",
// "config_sha256", "weights_sha256"}. The first time, it reads every
// weight (about a third of a second for 500 MB), so the Python layer runs
// it as a job, where Ctrl-C stops it, before State.Save and
// Model.LoadState, which then find it known.
func (m *Model) Identify() (*Job, error) {
	return startJob(func(ctx context.Context, _ func(any)) (any, error) {
		var id api.StateSnapshot
		err := m.use(func(am api.Model) (err error) {
			id, err = m.stateIdentity(ctx, am)
			return err
		})
		if err != nil {
			return nil, err
		}
		return stateIdentityJSON{id.Arch, id.ConfigHash, id.WeightsHash}, nil
	}), nil
}

// Save writes the state to path as a state file (checkpoint.WriteState,
// atomically): its tensors, its batch and token counts, and the identity
// of the model (see Identify), which LoadState checks.
func (s *State) Save(path string) error {
	return s.use(func(am api.Model, st api.State) error {
		ctx := context.Background()
		id, err := s.model.stateIdentity(ctx, am)
		if err != nil {
			return err
		}
		snap, err := api.Snapshot(ctx, am, st, id)
		if err != nil {
			return err
		}
		return checkpoint.WriteState(ctx, path, snap)
	})
}

// LoadState returns a new state holding the state file at path (written
// by State.Save or `densessm generate --save-state`), at the file's batch
// and token counts. A file of another model (another architecture,
// configuration or weights) gives an error wrapping api.ErrConfig; a file
// that is not a state file, or not one this model's states can hold, an
// error wrapping api.ErrCorrupt or api.ErrShape.
func (m *Model) LoadState(path string) (_ *State, err error) {
	defer api.Recover(&err)
	snap, err := checkpoint.ReadState(path)
	if err != nil {
		return nil, err
	}
	var st *State
	err = m.use(func(am api.Model) error {
		ctx := context.Background()
		id, err := m.stateIdentity(ctx, am)
		if err != nil {
			return err
		}
		if err := snap.CheckIdentity(id); err != nil {
			return fmt.Errorf("state file %s: %w", path, err)
		}
		s, err := api.Restore(ctx, am, snap, id)
		if err != nil {
			return fmt.Errorf("state file %s: %w", path, err)
		}
		st = &State{model: m, s: s, batch: s.Batch()}
		return nil
	})
	return st, err
}

// Copy returns a new state holding what this one holds (api.CopyState): a
// branch, which goes on independently of it.
func (s *State) Copy() (*State, error) {
	var c *State
	err := s.use(func(am api.Model, st api.State) error {
		n, err := api.CopyState(context.Background(), am, st)
		if err != nil {
			return err
		}
		c = &State{model: s.model, s: n, batch: n.Batch()}
		return nil
	})
	return c, err
}

// snapshotTensor is an entry of Snapshot's "tensors": a tensor of the
// state, which starts Offset float32s into the exported array.
type snapshotTensor struct {
	Name   string `json:"name"`
	Shape  []int  `json:"shape"`
	Offset int    `json:"offset"`
}

// snapshotJSON is what Snapshot returns, as JSON.
type snapshotJSON struct {
	Batch   int              `json:"batch"`
	Tokens  int              `json:"tokens"`
	Lens    []int            `json:"lens"`
	Tensors []snapshotTensor `json:"tensors"`
}

// Snapshot exports the state's tensors (api.StateSaver.SaveState: float32,
// named by the model, in its order) laid end to end as one Arrow Float32
// array into the structs at outArray/outSchema, and returns, as JSON,
// {"batch", "tokens", "lens", "tensors": [{"name", "shape", "offset"}]}
// (lens: each sequence's tokens, api.StateSnapshot.SeqLens), each
// tensor's offset counted in elements of that array.
func (s *State) Snapshot(outArray, outSchema int64) (string, error) {
	out := cArray{outArray, outSchema}
	if err := out.check("snapshot"); err != nil {
		return "", err
	}
	var res []byte
	err := s.use(func(am api.Model, st api.State) error {
		snap, err := api.Snapshot(context.Background(), am, st, api.StateSnapshot{})
		if err != nil {
			return err
		}
		layout, buf, err := snapshotBuffer(snap)
		if err != nil {
			return err
		}
		if res, err = json.Marshal(layout); err != nil {
			buf.release()
			return fmt.Errorf("snapshot layout: %w", err)
		}
		buf.export(out)
		return nil
	})
	return string(res), err
}

// snapshotBuffer copies snap's tensors, which must be float32, end to end
// into C memory, and returns where each one is.
func snapshotBuffer(snap api.StateSnapshot) (snapshotJSON, *cFloat32s, error) {
	layout := snapshotJSON{Batch: snap.Batch, Tokens: snap.Tokens, Lens: snap.SeqLens(), Tensors: make([]snapshotTensor, len(snap.Tensors))}
	n := 0
	for i, t := range snap.Tensors {
		if t.DType != api.F32 || len(t.Data) != 4*t.Shape.NumElements() {
			return layout, nil, fmt.Errorf("state tensor %s is %s%v in %d bytes: want float32: %w", t.Name, t.DType, t.Shape, len(t.Data), api.ErrUnsupported)
		}
		layout.Tensors[i] = snapshotTensor{Name: t.Name, Shape: append([]int{}, t.Shape...), Offset: n}
		n += t.Shape.NumElements()
	}
	buf := newCFloat32s(n)
	for i, t := range snap.Tensors {
		dst := buf.data[layout.Tensors[i].Offset:]
		for j := range t.Shape.NumElements() {
			dst[j] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*j:]))
		}
	}
	return layout, buf, nil
}
