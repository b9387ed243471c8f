package hgrn

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
)

// Model saves and restores its states (snapshots, copies: api.Snapshot,
// api.Restore, api.CopyState), in process and through the plugin.
var _ api.StateSaver = (*Model)(nil)

// tensors returns the state's contents under their snapshot names: per
// layer i its state [B,D] "layers.i.state".
func (s *State) tensors() []api.Parameter {
	ts := make([]api.Parameter, len(s.s))
	for i, t := range s.s {
		ts[i] = api.Parameter{Name: fmt.Sprintf("layers.%d.state", i), Value: t}
	}
	return ts
}

// SaveState implements api.StateSaver (see State.tensors for the names).
func (m *Model) SaveState(ctx context.Context, s api.State) (_ api.StateSnapshot, err error) {
	defer api.Recover(&err)
	st, err := m.ownState(s, s.Batch())
	if err != nil {
		return api.StateSnapshot{}, err
	}
	return api.SaveStateTensors(ctx, st.batch, st.pos, st.tensors())
}

// LoadState implements api.StateSaver: the tensors are checked whole
// before any is written.
func (m *Model) LoadState(ctx context.Context, s api.State, snap api.StateSnapshot) (err error) {
	defer api.Recover(&err)
	st, err := m.ownState(s, s.Batch())
	if err != nil {
		return err
	}
	if err := api.LoadStateTensors(ctx, snap, st.batch, st.tensors()); err != nil {
		return fmt.Errorf("hgrn: %w", err)
	}
	st.pos = snap.Tokens
	return nil
}
