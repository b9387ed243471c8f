package pybind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/generate"
)

// greedyJSON is Generate's options for n greedy tokens that do not stop
// early.
func greedyJSON(n int) string {
	return fmt.Sprintf(`{"temperature": 0, "max_new_tokens": %d, "ignore_eos": true}`, n)
}

// generateText runs Generate of one prompt and returns its text.
func generateText(t *testing.T, m *Model, prompt, opts string, state *State, cache *PrefixCache) string {
	t.Helper()
	j, err := m.Generate(fmt.Sprintf("[%q]", prompt), opts, false, state, cache)
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := poll(t, j)
	if err != nil {
		t.Fatal(err)
	}
	return res.(map[string]any)["texts"].([]any)[0].(string)
}

func defaultModel(t *testing.T) *Model {
	t.Helper()
	m, err := DefaultModel("cpu", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestGenerateContinuesState checks that two Generate calls on one state
// decode what one generation over the first prompt, its output and the
// second prompt decodes, token for token, and that the state counts
// every token.
func TestGenerateContinuesState(t *testing.T) {
	m := defaultModel(t)
	p1, p2, n := "package main\n\nfunc main() {\n", "\t// and then\n", 12
	s, err := m.NewState(1)
	if err != nil {
		t.Fatal(err)
	}
	out1 := generateText(t, m, p1, greedyJSON(n), s, nil)
	ids1, err := encodeIDs(m, p1)
	if err != nil {
		t.Fatal(err)
	}
	if got := stateLen(t, s); got != len(ids1)+n {
		t.Fatalf("after the first call the state holds %d tokens, want %d prompt + %d sampled", got, len(ids1), n)
	}
	out2 := generateText(t, m, p2, greedyJSON(n), s, nil)
	ids2, err := encodeIDs(m, p2)
	if err != nil {
		t.Fatal(err)
	}
	if got := stateLen(t, s); got != len(ids1)+len(ids2)+2*n {
		t.Fatalf("after the second call the state holds %d tokens, want %d", got, len(ids1)+len(ids2)+2*n)
	}
	// The reference, at the token level: the first prompt alone, then the
	// first prompt, its output and the second prompt as one prompt.
	o := generate.DefaultOptions()
	o.MaxTokens = n
	var ref1, ref2 [][]int32
	err = m.use(func(am api.Model) error {
		ctx := context.Background()
		if ref1, err = generate.Generate(ctx, am, [][]int32{ids1}, o, nil); err != nil {
			return err
		}
		ref2, err = generate.Generate(ctx, am, [][]int32{slices.Concat(ids1, ref1[0], ids2)}, o, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := decodeIDs(t, m, ref1[0]); out1 != want {
		t.Errorf("first call: %q, want %q", out1, want)
	}
	if want := decodeIDs(t, m, ref2[0]); out2 != want {
		t.Errorf("second call: %q, want %q (one generation over prompt 1, output 1 and prompt 2)", out2, want)
	}
}

func encodeIDs(m *Model, text string) ([]int32, error) {
	e, err := m.tok.t.EncodeFull(text, true)
	if err != nil {
		return nil, err
	}
	ids := make([]int32, len(e.IDs))
	for i, id := range e.IDs {
		ids[i] = int32(id)
	}
	return ids, nil
}

func decodeIDs(t *testing.T, m *Model, ids []int32) string {
	t.Helper()
	ints := make([]int, len(ids))
	for i, id := range ids {
		ints[i] = int(id)
	}
	s, err := m.tok.t.Decode(ints)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openCache returns an open prefix cache of m.
func openCache(t *testing.T, m *Model, dir string) *PrefixCache {
	t.Helper()
	c, err := m.NewPrefixCache(8, 1<<30, dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := poll(t, j); err != nil {
		t.Fatal(err)
	}
	return c
}

func cacheStats(t *testing.T, c *PrefixCache) generate.CacheStats {
	t.Helper()
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var st cacheStatsJSON
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		t.Fatal(err)
	}
	return generate.CacheStats{Prompts: st.Prompts, Hits: st.Hits, TokensReused: st.TokensReused, TokensRun: st.TokensRun, Saved: st.Saved}
}

// TestGeneratePrefixCache checks that a prompt run again through a prefix
// cache runs one token and decodes the same text, and that a second cache
// of the same model, of another instance, finds the first one's files.
func TestGeneratePrefixCache(t *testing.T) {
	m := defaultModel(t)
	dir := t.TempDir()
	c := openCache(t, m, dir)
	prompt := "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello\")\n"
	ids, err := encodeIDs(m, prompt)
	if err != nil {
		t.Fatal(err)
	}
	want := generateText(t, m, prompt, greedyJSON(10), nil, nil)
	if got := generateText(t, m, prompt, greedyJSON(10), nil, c); got != want {
		t.Fatalf("through a cold cache: %q, want %q", got, want)
	}
	if st := cacheStats(t, c); st.Prompts != 1 || st.Hits != 0 || st.TokensRun != len(ids) || st.Saved == 0 {
		t.Fatalf("after the first prompt: %+v", st)
	}
	if got := generateText(t, m, prompt, greedyJSON(10), nil, c); got != want {
		t.Fatalf("through a warm cache: %q, want %q", got, want)
	}
	if st := cacheStats(t, c); st.Prompts != 2 || st.Hits != 1 || st.TokensRun != len(ids)+1 || st.TokensReused != len(ids)-1 {
		t.Fatalf("after the same prompt again: %+v, want one hit running one token", st)
	}
	// Another instance of the model, with a cache of its own on the same
	// directory, starts from the files.
	m2 := defaultModel(t)
	c2 := openCache(t, m2, dir)
	if got := generateText(t, m2, prompt, greedyJSON(10), nil, c2); got != want {
		t.Fatalf("through another cache on the directory: %q, want %q", got, want)
	}
	if st := cacheStats(t, c2); st.Hits != 1 || st.TokensRun != 1 {
		t.Fatalf("the second cache: %+v, want a hit from disk", st)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := m.Generate(`["x"]`, greedyJSON(1), false, nil, c) // the job reports it
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := poll(t, j); !errors.Is(err, errClosed) {
		t.Errorf("closed cache: %v", err)
	}
	if _, err := c.Stats(); !errors.Is(err, errClosed) {
		t.Errorf("stats of a closed cache: %v", err)
	}
}

// TestGenerateWithRefusals checks what Generate refuses of states and
// caches.
func TestGenerateWithRefusals(t *testing.T) {
	m, other := defaultModel(t), defaultModel(t)
	s, _ := m.NewState(1)
	s2, _ := m.NewState(2)
	so, _ := other.NewState(1)
	c := openCache(t, m, "")
	co := openCache(t, other, "")
	unopened, err := m.NewPrefixCache(4, 0, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prompts string
		state   *State
		cache   *PrefixCache
		want    string
	}{
		{`["a"]`, s, c, "a state and a prefix cache together"},
		{`["a"]`, so, nil, "a state of another model"},
		{`["a", "b"]`, s, nil, "not a batch of 2"},
		{`["a"]`, s2, nil, "a state of 2 sequences"},
		{`["a"]`, nil, co, "a prefix cache of another model"},
		{`["a", "b"]`, nil, c, "not a batch of 2"},
	} {
		_, err := m.Generate(tc.prompts, greedyJSON(1), false, tc.state, tc.cache)
		if !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an ErrConfig error saying %q", tc.want, err, tc.want)
		}
	}
	j, err := m.Generate(`["a"]`, greedyJSON(1), false, nil, unopened)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := poll(t, j); err == nil || !strings.Contains(err.Error(), "not open") {
		t.Errorf("a cache not opened: %v", err)
	}
	s.Close()
	j, _ = m.Generate(`["a"]`, greedyJSON(1), false, s, nil)
	if _, _, err := poll(t, j); !errors.Is(err, errClosed) {
		t.Errorf("a closed state: %v", err)
	}
	for _, bad := range []struct {
		every       int
		mem, disk   int64
		wantMessage string
	}{{0, 1, 1, "every=0"}, {1, -1, 1, "memory_bytes=-1"}, {1, 1, 0, "disk_bytes=0"}} {
		if _, err := m.NewPrefixCache(bad.every, bad.mem, "", bad.disk); !errors.Is(err, api.ErrConfig) || !strings.Contains(err.Error(), bad.wantMessage) {
			t.Errorf("%s: %v", bad.wantMessage, err)
		}
	}
}
