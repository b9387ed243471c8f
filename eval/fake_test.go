package eval

import (
	"context"
	"fmt"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
)

// fakeConfig is the configuration of fakeModel.
type fakeConfig struct{ vocab int }

func (c fakeConfig) ArchName() string { return "fake" }
func (c fakeConfig) Vocab() int       { return c.vocab }
func (c fakeConfig) Validate() error  { return nil }

// fakeModel is an api.Model whose logits for a token are row(pos, id):
// pos is the token's position from the start of the state (from the start
// of the call for Forward), id the token. It records the sequences it was
// given.
type fakeModel struct {
	vocab int
	row   func(pos int, id int32) []float32
	b     api.Backend
	calls []fakeCall
}

// fakeCall is one call of fakeModel: the method, the position of the first
// token, and the tokens.
type fakeCall struct {
	method string
	pos    int
	ids    []int32
}

// fakeState is fakeModel's state: the number of tokens consumed.
type fakeState struct{ n int }

func (s *fakeState) Batch() int   { return 1 }
func (s *fakeState) Len() int     { return s.n }
func (s *fakeState) Reset() error { s.n = 0; return nil }
func (s *fakeState) Close() error { return nil }

func newFake(vocab int, row func(pos int, id int32) []float32) *fakeModel {
	return &fakeModel{vocab: vocab, row: row, b: cpu.New(api.BackendOptions{Threads: 2})}
}

func (m *fakeModel) Config() api.Config { return fakeConfig{m.vocab} }
func (m *fakeModel) Info() api.Info {
	return api.Info{Arch: "fake", Threads: m.b.Threads(), Modes: []api.Mode{api.Parallel, api.Chunkwise, api.Recurrent}}
}
func (m *fakeModel) Params() []api.ParamInfo { return nil }
func (m *fakeModel) ReadParams(context.Context, []string) ([]api.HostTensor, error) {
	return nil, nil
}
func (m *fakeModel) WriteParams(context.Context, []api.HostTensor) error { return nil }
func (m *fakeModel) Close() error                                        { return nil }

func (m *fakeModel) NewState(batch int) (api.State, error) {
	if batch != 1 {
		return nil, fmt.Errorf("fake: batch %d: %w", batch, api.ErrShape)
	}
	return &fakeState{}, nil
}

// logits returns the logits [1,T,V] of ids starting at position pos.
func (m *fakeModel) logits(method string, pos int, ids [][]int32) (api.Tensor, error) {
	if len(ids) != 1 || len(ids[0]) == 0 {
		return nil, fmt.Errorf("fake: want one non-empty sequence: %w", api.ErrShape)
	}
	m.calls = append(m.calls, fakeCall{method, pos, append([]int32(nil), ids[0]...)})
	out := make([]float32, 0, len(ids[0])*m.vocab)
	for i, id := range ids[0] {
		if id < 0 || int(id) >= m.vocab {
			return nil, fmt.Errorf("fake: id %d: %w", id, api.ErrOutOfRange)
		}
		out = append(out, m.row(pos+i, id)...)
	}
	return api.FromFloat32s(m.b, out, 1, len(ids[0]), m.vocab), nil
}

func (m *fakeModel) Forward(ctx context.Context, ids [][]int32, _ api.Form) (api.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m.logits("forward", 0, ids)
}

func (m *fakeModel) Prefill(ctx context.Context, s api.State, ids [][]int32, _ api.Form) (api.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := s.(*fakeState)
	t, err := m.logits("prefill", st.n, ids)
	if err == nil {
		st.n += len(ids[0])
	}
	return t, err
}

func (m *fakeModel) Step(ctx context.Context, s api.State, ids []int32) (api.Tensor, error) {
	t, err := m.Prefill(ctx, s, [][]int32{ids}, api.Form{})
	if err != nil {
		return nil, err
	}
	return m.b.Reshape(t, 1, m.vocab), nil
}
