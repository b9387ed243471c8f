package retnet

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
)

var _ api.StateSaver = (*Model)(nil)

// tensors returns the state's contents under their snapshot names: per
// layer i the retention state [B,H,dk,dv] "layers.i.retention".
func (s *State) tensors() []api.Parameter {
	ts := make([]api.Parameter, len(s.s))
	for i, t := range s.s {
		ts[i] = api.Parameter{Name: fmt.Sprintf("layers.%d.retention", i), Value: t}
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
	return api.SaveStateLens(ctx, st.lens, st.tensors())
}

// LoadState implements api.StateSaver.
func (m *Model) LoadState(ctx context.Context, s api.State, snap api.StateSnapshot) (err error) {
	defer api.Recover(&err)
	st, err := m.ownState(s, s.Batch())
	if err != nil {
		return err
	}
	if err := api.LoadStateTensors(ctx, snap, st.batch, st.tensors()); err != nil {
		return fmt.Errorf("retnet: %w", err)
	}
	st.lens = snap.SeqLens()
	return nil
}
