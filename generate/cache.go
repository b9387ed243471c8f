package generate

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
)

// PrefixCache keeps state snapshots of a model at token prefixes, so that a
// prompt sharing a prefix with an earlier one resumes from the state there
// instead of running the prefix again. A prompt's state is saved after every
// Every tokens of it and after all its tokens but the last (the logits to
// sample from come from that one): a prompt seen before re-runs one token,
// and one that shares a prefix with it at most Every.
//
// Snapshots are keyed by a hash of the model's identity (architecture,
// configuration and weights: api.Identity) and of the prefix's tokens
// (caches with another Every find the states of prefixes of the same
// lengths), and
// kept in memory up to MemoryBytes, the least recently used going first,
// and, when Dir is set, as state files in Dir (docs/state.md) up to
// DiskBytes, the oldest files going first. A PrefixCache is safe for use by
// several goroutines; several processes may share a Dir (files are written
// atomically, and one that cannot be read is a miss).
type PrefixCache struct {
	m   api.Model
	id  api.StateSnapshot
	o   CacheOptions
	mu  sync.Mutex
	mem *list.List               // of *cacheEntry, most recently used first
	at  map[string]*list.Element // by key
	n   int64                    // bytes in memory
	st  CacheStats
}

// CacheOptions configure a PrefixCache.
type CacheOptions struct {
	// Every is the distance in tokens between a prompt's snapshots (0:
	// 256).
	Every int
	// MemoryBytes bounds the snapshots kept in memory (0 and below keep
	// none in memory; DefaultCacheOptions sets 1 GiB).
	MemoryBytes int64
	// Dir, when not empty, keeps snapshots as state files in this
	// directory, made when missing.
	Dir string
	// DiskBytes bounds the files in Dir (0: 4 GiB).
	DiskBytes int64
	// Identity, when its WeightsHash is set, is the model's api.Identity,
	// known already: NewPrefixCache then does not read the weights again.
	Identity api.StateSnapshot
}

// DefaultCacheOptions returns a snapshot every 256 tokens, 1 GiB in memory
// and no directory.
func DefaultCacheOptions() CacheOptions {
	return CacheOptions{Every: 256, MemoryBytes: 1 << 30, DiskBytes: 4 << 30}
}

// CacheStats counts what a PrefixCache did.
type CacheStats struct {
	// Prompts is the number of prompts prefilled through the cache, Hits
	// those that resumed from a snapshot.
	Prompts, Hits int
	// TokensReused counts the prompt tokens taken from snapshots,
	// TokensRun those run through the model.
	TokensReused, TokensRun int
	// Saved counts the snapshots stored.
	Saved int
}

type cacheEntry struct {
	key  string
	snap api.StateSnapshot
}

// NewPrefixCache returns a cache of m's states. It computes m's identity,
// which reads every weight once, unless o.Identity gives it.
func NewPrefixCache(ctx context.Context, m api.Model, o CacheOptions) (*PrefixCache, error) {
	def := DefaultCacheOptions()
	if o.Every == 0 {
		o.Every = def.Every
	}
	if o.DiskBytes == 0 {
		o.DiskBytes = def.DiskBytes
	}
	if o.Every < 1 || o.DiskBytes < 0 {
		return nil, fmt.Errorf("prefix cache: a snapshot every %d tokens, %d bytes on disk: %w", o.Every, o.DiskBytes, api.ErrConfig)
	}
	if _, ok := m.(api.StateSaver); !ok || !m.Info().Snapshots {
		return nil, fmt.Errorf("prefix cache: %s model: state snapshots: %w", m.Config().ArchName(), api.ErrUnsupported)
	}
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("prefix cache: %w", err)
		}
	}
	id := o.Identity
	if id.WeightsHash == "" {
		var err error
		if id, err = api.Identity(ctx, m); err != nil {
			return nil, fmt.Errorf("prefix cache: %w", err)
		}
	}
	return &PrefixCache{m: m, id: id, o: o, mem: list.New(), at: map[string]*list.Element{}}, nil
}

// Stats returns what the cache has done so far.
func (c *PrefixCache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// prefixKeys returns the key of every prefix of prompt whose state the
// cache keeps, by length: every Every tokens and len(prompt)-1. A key is
// the SHA-256 of the model's identity and the prefix's tokens, whatever
// Every is (caches of other Every share the states of prefixes of the same
// length); one pass over the prompt gives them all.
func (c *PrefixCache) prefixKeys(prompt []int32) map[int]string {
	keys := map[int]string{}
	h := sha256.New()
	h.Write([]byte(c.id.Arch + "\x00" + c.id.ConfigHash + "\x00" + c.id.WeightsHash + "\x00"))
	var tok [4]byte
	from := 0
	for _, end := range c.stops(len(prompt)) {
		for _, t := range prompt[from:end] {
			binary.LittleEndian.PutUint32(tok[:], uint32(t))
			h.Write(tok[:])
		}
		keys[end] = hex.EncodeToString(h.Sum(nil)) // Sum leaves the running hash as it is
		from = end
	}
	return keys
}

// stops returns the prefix lengths of a prompt of n tokens whose states
// the cache keeps, in increasing order.
func (c *PrefixCache) stops(n int) []int {
	var out []int
	for end := c.o.Every; end < n; end += c.o.Every {
		out = append(out, end)
	}
	if n > 1 && (len(out) == 0 || out[len(out)-1] != n-1) {
		out = append(out, n-1)
	}
	return out
}

// prefill returns a state of one sequence that has consumed prompt (at
// least one token), and the logits [1,V] after its last token, resuming
// from the longest cached prefix and storing the prompt's snapshots.
func (c *PrefixCache) prefill(ctx context.Context, prompt []int32) (api.State, api.Tensor, error) {
	keys := c.prefixKeys(prompt)
	stops := c.stops(len(prompt))
	var st api.State
	from := 0
	for i := len(stops) - 1; i >= 0 && st == nil; i-- {
		snap, ok := c.lookup(keys[stops[i]])
		if !ok {
			continue
		}
		s, err := api.Restore(ctx, c.m, snap, c.id)
		if err != nil {
			continue // a file of another build, or damaged: a miss
		}
		st, from = s, stops[i]
	}
	c.mu.Lock()
	c.st.Prompts++
	if st != nil {
		c.st.Hits++
	}
	c.st.TokensReused += from
	c.st.TokensRun += len(prompt) - from
	c.mu.Unlock()
	if st == nil {
		var err error
		if st, err = c.m.NewState(1); err != nil {
			return nil, nil, err
		}
	}
	var logits api.Tensor
	for _, end := range append(slices.Clone(stops), len(prompt)) {
		if end <= from {
			continue
		}
		if logits != nil {
			logits.Backend().Free(logits)
		}
		var err error
		if logits, err = prefillLast(ctx, c.m, st, [][]int32{prompt[from:end]}, end-from); err != nil {
			st.Close()
			return nil, nil, err
		}
		from = end
		if end == len(prompt) {
			break
		}
		if err := c.save(ctx, keys[end], st); err != nil {
			st.Close()
			return nil, nil, err
		}
	}
	return st, logits, nil
}

// lookup returns the snapshot under key, from memory or from Dir.
func (c *PrefixCache) lookup(key string) (api.StateSnapshot, bool) {
	c.mu.Lock()
	if e, ok := c.at[key]; ok {
		c.mem.MoveToFront(e)
		snap := e.Value.(*cacheEntry).snap
		c.mu.Unlock()
		return snap, true
	}
	c.mu.Unlock()
	if c.o.Dir == "" {
		return api.StateSnapshot{}, false
	}
	path := c.file(key)
	snap, err := checkpoint.ReadState(path)
	if err != nil {
		return api.StateSnapshot{}, false
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now) // recently used: evicted last
	c.keep(key, snap)
	return snap, true
}

// save stores the snapshot of st under key.
func (c *PrefixCache) save(ctx context.Context, key string, st api.State) error {
	snap, err := api.Snapshot(ctx, c.m, st, c.id)
	if err != nil {
		return fmt.Errorf("prefix cache: %w", err)
	}
	c.keep(key, snap)
	c.mu.Lock()
	c.st.Saved++
	c.mu.Unlock()
	if c.o.Dir == "" {
		return nil
	}
	if err := checkpoint.WriteState(ctx, c.file(key), snap); err != nil {
		return fmt.Errorf("prefix cache: %w", err)
	}
	return c.trimDir()
}

// keep puts snap in memory under key, evicting the least recently used
// snapshots past MemoryBytes.
func (c *PrefixCache) keep(key string, snap api.StateSnapshot) {
	size := snap.Bytes()
	if size > c.o.MemoryBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.at[key]; ok {
		c.mem.MoveToFront(e)
		return
	}
	c.at[key] = c.mem.PushFront(&cacheEntry{key: key, snap: snap})
	c.n += size
	for c.n > c.o.MemoryBytes {
		e := c.mem.Back().Value.(*cacheEntry)
		c.mem.Remove(c.mem.Back())
		delete(c.at, e.key)
		c.n -= e.snap.Bytes()
	}
}

// stateFileSuffix ends the names of the cache's files in Dir.
const stateFileSuffix = ".state.safetensors"

// file returns the path of key's state file.
func (c *PrefixCache) file(key string) string { return filepath.Join(c.o.Dir, key+stateFileSuffix) }

// trimDir removes the least recently used state files of Dir until they
// take DiskBytes at most. Files it cannot stat are left alone.
func (c *PrefixCache) trimDir() error {
	entries, err := os.ReadDir(c.o.Dir)
	if err != nil {
		return fmt.Errorf("prefix cache: %w", err)
	}
	type file struct {
		path string
		size int64
		used time.Time
	}
	var files []file
	var total int64
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), stateFileSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		files = append(files, file{filepath.Join(c.o.Dir, e.Name()), info.Size(), info.ModTime()})
		total += info.Size()
	}
	slices.SortFunc(files, func(a, b file) int { return a.used.Compare(b.used) })
	for _, f := range files {
		if total <= c.o.DiskBytes {
			break
		}
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("prefix cache: %w", err)
		}
		total -= f.size
	}
	return nil
}
