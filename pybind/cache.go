package pybind

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/generate"
)

// PrefixCache is a prefix-state cache of a model (generate.PrefixCache):
// the states of the prompts Generate has prefilled through it, from which
// a later prompt sharing a prefix starts. It is made in two steps,
// Model.NewPrefixCache and Open, since making a generate.PrefixCache
// hashes the model's weights, which the Python layer runs as a job.
type PrefixCache struct {
	model *Model
	o     generate.CacheOptions

	mu     sync.Mutex
	c      *generate.PrefixCache // nil until Open has run
	closed bool
}

// NewPrefixCache returns a prefix cache of the model, not yet open (see
// Open): a snapshot every `every` tokens of a prompt (and one after all
// its tokens but the last), kept in memory up to memoryBytes (0: none in
// memory) and, when dir is not empty, as state files in dir up to
// diskBytes.
func (m *Model) NewPrefixCache(every int, memoryBytes int64, dir string, diskBytes int64) (*PrefixCache, error) {
	switch {
	case every < 1:
		return nil, fmt.Errorf("every=%d: want a snapshot every 1 token or more: %w", every, api.ErrConfig)
	case memoryBytes < 0:
		return nil, fmt.Errorf("memory_bytes=%d: want 0 (none in memory) or more: %w", memoryBytes, api.ErrConfig)
	case diskBytes < 1:
		return nil, fmt.Errorf("disk_bytes=%d: want 1 or more: %w", diskBytes, api.ErrConfig)
	}
	return &PrefixCache{model: m, o: generate.CacheOptions{Every: every, MemoryBytes: memoryBytes, Dir: dir, DiskBytes: diskBytes}}, nil
}

// Open starts a job that makes the cache (generate.NewPrefixCache, with
// the model's identity: computed the first time, reading every weight
// once, and then kept; it makes the directory when there is one). Opening
// an open cache does nothing.
func (c *PrefixCache) Open() (*Job, error) {
	return startJob(func(ctx context.Context, _ func(any)) (any, error) {
		return nil, c.model.use(func(am api.Model) error {
			c.mu.Lock()
			done := c.c != nil || c.closed
			c.mu.Unlock()
			if done {
				return nil
			}
			o := c.o
			id, err := c.model.stateIdentity(ctx, am) // kept for later caches and state files
			if err != nil {
				return err
			}
			o.Identity = id
			pc, err := generate.NewPrefixCache(ctx, am, o)
			if err != nil {
				return err
			}
			c.mu.Lock()
			c.c = pc
			c.mu.Unlock()
			return nil
		})
	}), nil
}

// get returns the open cache, or an error for one not opened or closed.
func (c *PrefixCache) get() (*generate.PrefixCache, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, fmt.Errorf("prefix cache: %w", errClosed)
	case c.c == nil:
		return nil, fmt.Errorf("prefix cache: not open (Open has not run to its end): %w", api.ErrConfig)
	}
	return c.c, nil
}

// cacheStatsJSON is what Stats returns, as JSON (generate.CacheStats).
type cacheStatsJSON struct {
	Prompts      int `json:"prompts"`
	Hits         int `json:"hits"`
	TokensReused int `json:"tokens_reused"`
	TokensRun    int `json:"tokens_run"`
	Saved        int `json:"saved"`
}

// Stats returns, as JSON, what the cache has done (generate.CacheStats):
// {"prompts", "hits", "tokens_reused", "tokens_run", "saved"}. It does not
// wait for a generation that is running.
func (c *PrefixCache) Stats() (string, error) {
	pc, err := c.get()
	if err != nil {
		return "", err
	}
	s := pc.Stats()
	b, err := json.Marshal(cacheStatsJSON{s.Prompts, s.Hits, s.TokensReused, s.TokensRun, s.Saved})
	return string(b), err
}

// Close drops the snapshots kept in memory (the files in the directory
// stay, for other caches); later calls fail. A generation running
// through the cache finishes with it. Closing twice does nothing.
func (c *PrefixCache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c, c.closed = nil, true
	return nil
}
