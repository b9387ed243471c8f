package cli

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/generate"
	"github.com/densessm/densessm/internal/sysmem"
)

// stateFlags are --state and --save-state: a recurrent state read from a
// state file to continue, and the file to save the state in afterwards
// (docs/state.md).
type stateFlags struct {
	load, saveTo string
	id           api.StateSnapshot // the model's identity, once open has run
	cacheDir     string            // --cache-dir
	cacheSize    string            // --cache-size
	cacheEvery   int               // --cache-every
}

func (s *stateFlags) register(f *pflag.FlagSet) {
	f.StringVar(&s.load, "state", "", "continue the recurrent state saved in this state file (--save-state)")
	f.StringVar(&s.saveTo, "save-state", "", "save the recurrent state after the run to this file")
	f.StringVar(&s.cacheDir, "cache-dir", "", "keep the prompt's states in this directory, and start from the longest prefix of the prompt found there")
	f.StringVar(&s.cacheSize, "cache-size", "4GiB", "the most the files in --cache-dir take; the least recently used go first")
	f.IntVar(&s.cacheEvery, "cache-every", 256, "with --cache-dir, save the prompt's state every this many tokens")
}

// used reports whether a flag that needs one prompt is set.
func (s *stateFlags) used() bool { return s.load != "" || s.saveTo != "" || s.cacheDir != "" }

// cache returns the prefix cache of --cache-dir for m, or nil without it.
func (s *stateFlags) cache(ctx context.Context, m api.Model) (*generate.PrefixCache, error) {
	if s.cacheDir == "" {
		return nil, nil
	}
	if s.load != "" || s.saveTo != "" {
		return nil, fmt.Errorf("--cache-dir with --state or --save-state: %w", api.ErrConfig)
	}
	size, err := sysmem.ParseSize(s.cacheSize)
	if err != nil || size < 1 {
		return nil, fmt.Errorf("--cache-size %q: want a size such as 4GiB: %w", s.cacheSize, api.ErrConfig)
	}
	if s.cacheEvery < 1 {
		return nil, fmt.Errorf("--cache-every %d: want 1 or more: %w", s.cacheEvery, api.ErrConfig)
	}
	c, err := generate.NewPrefixCache(ctx, m, generate.CacheOptions{Every: s.cacheEvery, Dir: s.cacheDir, DiskBytes: size})
	if err != nil {
		return nil, fmt.Errorf("--cache-dir: %w", err)
	}
	return c, nil
}

// open returns the state to run m on: the one in --state (refused when m
// did not make it), an empty one for --save-state, or nil for neither.
func (s *stateFlags) open(ctx context.Context, m api.Model) (api.State, error) {
	if s.load == "" && s.saveTo == "" {
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
