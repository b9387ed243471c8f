package mamba

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
)

var _ api.StateSaver = (*Model)(nil)

// tensors returns the state's contents under their snapshot names: per
// layer i the conv window [B,K-1,E] "layers.i.conv" and the SSM state
// [B,E,N] "layers.i.ssm".
func (s *State) tensors() []api.Parameter {
	ts := make([]api.Parameter, 0, 2*len(s.conv))
	for i := range s.conv {
		ts = append(ts, api.Parameter{Name: fmt.Sprintf("layers.%d.conv", i), Value: s.conv[i]},
			api.Parameter{Name: fmt.Sprintf("layers.%d.ssm", i), Value: s.ssm[i]})
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
		return fmt.Errorf("mamba: %w", err)
	}
	st.lens = snap.SeqLens()
	return nil
}
