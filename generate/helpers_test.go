package generate

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/densessm/densessm/api"
	_ "github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/backends/cpu"
)

// tinyVocab covers the ids of tokenizer/testdata/gpt2.json (1001) and a
// few the tokenizer does not know, as a padded vocabulary has.
const tinyVocab = 1008

// tinyMamba returns a small random Mamba with tinyVocab tokens.
func tinyMamba(t testing.TB, seed int64) api.Model {
	t.Helper()
	arch, err := api.LookupArchitecture("mamba")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := arch.ParseConfig(fmt.Appendf(nil, `{"vocab_size": %d, "hidden_size": 32, "num_hidden_layers": 2, "state_size": 8}`, tinyVocab))
	if err != nil {
		t.Fatal(err)
	}
	m, err := arch.New(context.Background(), cfg, api.BuildOptions{On: cpu.New(api.BackendOptions{Threads: 1}), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fakeConfig is the configuration of the fake models.
type fakeConfig struct{ vocab int }

func (c fakeConfig) ArchName() string { return "fake" }
func (c fakeConfig) Vocab() int       { return c.vocab }
func (c fakeConfig) Validate() error  { return nil }

// fakeModel is a model whose logits after a sequence are a function of the
// whole sequence, computed exactly: logits(history) fills a row. It records
// the calls made to it.
type fakeModel struct {
	vocab   int
	b       api.Backend
	logits  func(hist []int32, row []float32)
	prefill []int     // the length of each Prefill call
	steps   int       // the number of Step calls
	first   [][]int32 // the ids of the first Prefill call
}

type fakeState struct{ hist [][]int32 }

func (s *fakeState) Batch() int { return len(s.hist) }
func (s *fakeState) Len() int   { return len(s.hist[0]) }
func (s *fakeState) Reset() error {
	for i := range s.hist {
		s.hist[i] = nil
	}
	return nil
}
func (s *fakeState) Close() error { return nil }

func newFake(vocab int, logits func(hist []int32, row []float32)) *fakeModel {
	return &fakeModel{vocab: vocab, b: cpu.New(api.BackendOptions{Threads: 1}), logits: logits}
}

func (m *fakeModel) Config() api.Config      { return fakeConfig{m.vocab} }
func (m *fakeModel) Info() api.Info          { return api.Info{Arch: "fake", Modes: []api.Mode{api.Parallel}} }
func (m *fakeModel) Params() []api.ParamInfo { return nil }
func (m *fakeModel) ReadParams(context.Context, []string) ([]api.HostTensor, error) {
	return nil, nil
}
func (m *fakeModel) WriteParams(context.Context, []api.HostTensor) error { return nil }
func (m *fakeModel) Close() error                                        { return nil }

func (m *fakeModel) NewState(batch int) (api.State, error) {
	return &fakeState{hist: make([][]int32, batch)}, nil
}

func (m *fakeModel) Forward(ctx context.Context, ids [][]int32, _ api.Form) (api.Tensor, error) {
	s, _ := m.NewState(len(ids))
	return m.run(s.(*fakeState), ids)
}

func (m *fakeModel) Prefill(ctx context.Context, s api.State, ids [][]int32, _ api.Form) (api.Tensor, error) {
	if m.first == nil {
		for _, row := range ids {
			m.first = append(m.first, slices.Clone(row))
		}
	}
	m.prefill = append(m.prefill, len(ids[0]))
	return m.run(s.(*fakeState), ids)
}

func (m *fakeModel) Step(ctx context.Context, s api.State, ids []int32) (api.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.steps++
	cols := make([][]int32, len(ids))
	for b, id := range ids {
		cols[b] = []int32{id}
	}
	t, err := m.run(s.(*fakeState), cols)
	if err != nil {
		return nil, err
	}
	return m.b.Reshape(t, len(ids), m.vocab), nil
}

// run appends ids to the state and returns the logits [B,T,V].
func (m *fakeModel) run(s *fakeState, ids [][]int32) (api.Tensor, error) {
	B, T := len(ids), len(ids[0])
	out := make([]float32, B*T*m.vocab)
	for b, row := range ids {
		if len(row) != T {
			return nil, fmt.Errorf("ragged batch: %w", api.ErrShape)
		}
		for t, id := range row {
			s.hist[b] = append(s.hist[b], id)
			m.logits(s.hist[b], out[(b*T+t)*m.vocab:(b*T+t+1)*m.vocab])
		}
	}
	return api.FromFloat32s(m.b, out, B, T, m.vocab), nil
}

// hashLogits fills row with pseudo-random logits in [-3, 3) that depend on
// every token of hist.
func hashLogits(hist []int32, row []float32) {
	h := uint64(0x9e3779b97f4a7c15)
	for _, id := range hist {
		h = mix(h ^ uint64(id))
	}
	for v := range row {
		row[v] = float32(mix(h+uint64(v))>>40)/float32(1<<24)*6 - 3
	}
}

// mix is splitmix64's finalizer.
func mix(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// scriptLogits returns a logits function under which greedy decoding after
// a prompt of promptLen tokens gives script, then end (an EOS id, or any
// token when no EOS is set).
func scriptLogits(promptLen int, script []int32, end int32) func(hist []int32, row []float32) {
	return func(hist []int32, row []float32) {
		for v := range row {
			row[v] = -1
		}
		k := len(hist) - promptLen
		switch {
		case k < 0:
		case k < len(script):
			row[script[k]] = 5
		default:
			row[end] = 5
		}
	}
}

// argmax returns the index of the largest value, the lowest on ties, and
// the gap to the second largest.
func argmax(row []float32) (int32, float64) {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	gap := math.Inf(1)
	for i, v := range row {
		if i != best {
			gap = min(gap, float64(row[best])-float64(v))
		}
	}
	return int32(best), gap
}
