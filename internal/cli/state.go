package cli

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

// stateFlags are --state and --save-state: a recurrent state read from a
// state file to continue, and the file to save the state in afterwards
// (docs/state.md).
type stateFlags struct {
	load, saveTo string
	id           api.StateSnapshot // the model's identity, once open has run
}

func (s *stateFlags) register(f *pflag.FlagSet) {
	f.StringVar(&s.load, "state", "", "continue the recurrent state saved in this state file (--save-state)")
	f.StringVar(&s.saveTo, "save-state", "", "save the recurrent state after the run to this file")
}

// used reports whether either flag is set.
func (s *stateFlags) used() bool { return s.load != "" || s.saveTo != "" }

// open returns the state to run m on: the one in --state (refused when m
// did not make it), an empty one for --save-state, or nil for neither.
func (s *stateFlags) open(ctx context.Context, m api.Model) (api.State, error) {
	if !s.used() {
		return nil, nil
	}
	id, err := api.Identity(ctx, m)
	if err != nil {
		return nil, err
	}
	s.id = id
	if s.load == "" {
		return m.NewState(1)
	}
	snap, err := checkpoint.ReadState(s.load)
	if err != nil {
		return nil, err
	}
	st, err := api.Restore(ctx, m, snap, id)
	if err != nil {
		return nil, fmt.Errorf("--state %s: %w", s.load, err)
	}
	return st, nil
}

// save writes st, a state of m, to --save-state when it is set.
func (s *stateFlags) save(ctx context.Context, m api.Model, st api.State) error {
	if s.saveTo == "" {
		return nil
	}
	snap, err := api.Snapshot(ctx, m, st, s.id)
	if err != nil {
		return err
	}
	if err := checkpoint.WriteState(ctx, s.saveTo, snap); err != nil {
		return fmt.Errorf("--save-state: %w", err)
	}
	return nil
}
