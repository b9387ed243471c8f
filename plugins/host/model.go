package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
	"unsafe"

	"google.golang.org/grpc"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/backends/cpu"
	"github.com/densessm/densessm/plugins/internal/wire"
	pb "github.com/densessm/densessm/plugins/proto"
)

// paramGroup is the most bytes of parameters one ReadParams or WriteParams
// request carries, well below wire.MaxMessage.
const paramGroup = 256 << 20

// Model is a model that lives in a plugin process. Its outputs are
// tensors of this process's CPU backend.
type Model struct {
	p      *Plugin
	gen    int
	id     uint64
	cfg    api.Config
	info   api.Info
	params []api.ParamInfo
	host   *cpu.Backend
	result *os.File // the plugin's result memfd, opened once
	saver  bool     // the plugin's model saves and loads its states
	last   bool     // the plugin answers PrefillRequest.last
	closed bool
}

var (
	_ api.Model        = (*Model)(nil)
	_ api.TrainStepper = (*Model)(nil)
	_ api.DirSaver     = (*Model)(nil)
	_ api.StateSaver   = (*Model)(nil)

	_ api.SequenceLens = (*State)(nil)
)

// newModel is the host's view of a model the plugin built and described;
// a description it cannot use unloads the model again.
func newModel(p *Plugin, gen int, pi *pb.ModelInfo) (_ *Model, err error) {
	m := &Model{p: p, gen: gen, id: pi.Model, saver: pi.StateSaver, last: pi.PrefillLast}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if m.cfg, err = hostConfig(pi.Arch, pi.ConfigJson, int(pi.Vocab)); err != nil {
		return nil, fmt.Errorf("plugin %s: %w", p, err)
	}
	m.host = cpu.New(api.BackendOptions{Threads: 1})
	m.info = api.Info{Arch: pi.Arch, Backend: pi.Backend, Threads: int(pi.Threads), Plugin: p.Desc.Name, Trainable: pi.Trainable, Snapshots: pi.StateSaver, Packed: pi.Packed}
	if pi.Weights != "" {
		if m.info.Weights, err = api.ParseWeightDType(pi.Weights); err != nil {
			return nil, fmt.Errorf("plugin %s: model info: %w", p.Desc.Name, err)
		}
	}
	for _, mode := range pi.Modes {
		m.info.Modes = append(m.info.Modes, api.Mode(mode))
	}
	for _, q := range pi.Params {
		dt, err := api.ParseDType(q.Dtype)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: parameter %s: %w", p, q.Name, err)
		}
		shape := make(api.Shape, len(q.Shape))
		for i, d := range q.Shape {
			shape[i] = int(d)
		}
		if err := shape.Validate(); err != nil {
			return nil, fmt.Errorf("plugin %s: parameter %s: %w", p, q.Name, err)
		}
		m.params = append(m.params, api.ParamInfo{Name: q.Name, DType: dt, Shape: shape})
	}
	return m, nil
}

// call runs a request on this model's process.
func (m *Model) call(ctx context.Context, what string, f func(context.Context, pb.RuntimeClient, ...grpc.CallOption) error) error {
	if m.closed {
		return fmt.Errorf("plugin %s: %s: the model is closed: %w", m.p, what, api.ErrNotFound)
	}
	_, err := m.p.callGen(ctx, m.gen, what, f)
	return err
}

// Config returns the model's configuration.
func (m *Model) Config() api.Config { return m.cfg }

// Info reports the model's capabilities as the plugin described them.
func (m *Model) Info() api.Info {
	info := m.info
	info.Modes = append([]api.Mode(nil), info.Modes...)
	return info
}

// Params describes the parameters.
func (m *Model) Params() []api.ParamInfo { return append([]api.ParamInfo(nil), m.params...) }

// ReadParams reads parameter values from the plugin, in groups of at most
// 256 MiB per request.
func (m *Model) ReadParams(ctx context.Context, names []string) ([]api.HostTensor, error) {
	if len(names) == 0 {
		for _, p := range m.params {
			names = append(names, p.Name)
		}
	}
	size := map[string]int{}
	for _, p := range m.params {
		size[p.Name] = p.DType.Bytes(p.Shape.NumElements())
	}
	var out []api.HostTensor
	for len(names) > 0 {
		n, bytes := 0, 0
		for n < len(names) && (n == 0 || bytes+size[names[n]] <= paramGroup) {
			bytes += size[names[n]]
			n++
		}
		var resp *pb.Tensors
		err := m.call(ctx, "read parameters", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) (err error) {
			resp, err = c.ReadParams(ctx, &pb.ParamsRequest{Model: m.id, Names: names[:n]}, o...)
			return err
		})
		if err != nil {
			return nil, err
		}
		ts, err := wire.DecodeTensors(resp.Arrow)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: read parameters: %w", m.p, err)
		}
		out = append(out, ts...)
		names = names[n:]
	}
	return out, nil
}

// WriteParams writes parameter values into the plugin's model, in groups
// of at most 256 MiB per request.
func (m *Model) WriteParams(ctx context.Context, values []api.HostTensor) error {
	for len(values) > 0 {
		n, bytes := 0, 0
		for n < len(values) && (n == 0 || bytes+len(values[n].Data) <= paramGroup) {
			bytes += len(values[n].Data)
			n++
		}
		enc, err := wire.EncodeTensors(values[:n])
		if err != nil {
			return err
		}
		err = m.call(ctx, "write parameters", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
			_, err := c.WriteParams(ctx, &pb.WriteParamsRequest{Model: m.id, Arrow: enc}, o...)
			return err
		})
		if err != nil {
			return err
		}
		values = values[n:]
	}
	return nil
}

// readRemote reads logits of at most max bytes from the plugin's memory
// into a new tensor.
func (m *Model) readRemote(r *pb.RemoteTensor, max int64) (api.Tensor, error) {
	shape := make(api.Shape, len(r.Shape))
	for i, d := range r.Shape {
		shape[i] = int(d)
	}
	if err := shape.Validate(); err != nil || r.Dtype != api.F32.String() || r.Bytes != 4*int64(shape.NumElements()) || r.Bytes > max {
		return nil, fmt.Errorf("logits of %d bytes, %s %v, in the plugin's memory (at most %d): %w", r.Bytes, r.Dtype, r.Shape, max, api.ErrCorrupt)
	}
	data := make([]float32, shape.NumElements())
	if len(data) > 0 {
		if err := readRemote(m.p.pid(m.gen), r.Addr, unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*len(data))); err != nil {
			return nil, err
		}
	}
	return m.host.WrapFloat32s(data, shape...), nil
}

// errUseFile stops reading chunks when the plugin sent a memfd instead.
var errUseFile = errors.New("the result is in a file")

// stepLogits copies a Step reply's logits into dst, allocated when nil or
// of another shape.
func (m *Model) stepLogits(resp *pb.Logits, dst api.Tensor) (api.Tensor, error) {
	h, err := wire.DecodeTensor(resp.Arrow)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: logits: %w", m.p, err)
	}
	if h.DType != api.F32 {
		return nil, fmt.Errorf("plugin %s: logits are %s: %w", m.p, h.DType, api.ErrDType)
	}
	if dst == nil || !dst.Shape().Equal(h.Shape) {
		dst = m.host.Alloc(api.F32, h.Shape...)
	}
	m.host.Upload(dst, h.Data)
	return dst, nil
}

// Forward runs the sequences in the plugin. Sequences of different
// lengths go as one request, padded, to a plugin whose model is packed
// (ModelInfo.packed); to any other, each group of one length is a request
// of its own (api.ForwardEach). Either way the logits are [B,T,V], T the
// longest sequence, zero past each sequence's end.
func (m *Model) Forward(ctx context.Context, ids [][]int32, f api.Form) (api.Tensor, error) {
	if api.Ragged(ids) && !m.info.Packed {
		return api.ForwardEach(ctx, m, ids, f)
	}
	enc, lengths, err := wire.EncodeRagged(ids)
	if err != nil {
		return nil, err
	}
	T := 0
	for _, seq := range ids {
		T = max(T, len(seq))
	}
	var out api.Tensor
	err = m.call(ctx, "forward", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		stream, err := c.Forward(ctx, &pb.ForwardRequest{Model: m.id, Ids: enc, Lengths: lengths, Form: &pb.Form{Mode: int32(f.Mode), Chunk: int64(f.Chunk)}, Shared: sharedFiles, Remote: m.p.remote}, o...)
		if err != nil {
			return err
		}
		out, _, err = m.streamedLogits(stream, api.Shape{len(ids), T, m.cfg.Vocab()})
		return err
	})
	return out, err
}

// streamedLogits reads logits of shape want sent in chunks into a tensor
// of this process (no copy after the chunks are read), with the state's
// length. The stream may not be longer than logits of that shape need,
// and logits of another shape are refused (api.ErrCorrupt).
func (m *Model) streamedLogits(stream grpc.ServerStreamingClient[pb.Chunk], want api.Shape) (api.Tensor, int, error) {
	n := 0
	logits := int64(want.NumElements()) * 4
	size := wire.StreamSize(logits)
	var remote *pb.RemoteTensor
	h, err := wire.ReadTensorStream(func() ([]byte, error) {
		c, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		n = int(c.Len)
		if c.Remote != nil {
			remote = c.Remote
			return nil, errUseFile
		}
		if c.Fd > 0 {
			if m.result == nil {
				if m.result, err = m.p.openFile(m.gen, int(c.Fd)); err != nil {
					return nil, err
				}
			}
			return nil, errUseFile
		}
		return c.Data, nil
	}, size)
	if errors.Is(err, errUseFile) && remote != nil { // the logits are in the plugin's memory
		t, err := m.readRemote(remote, logits)
		if err == nil && !t.Shape().Equal(want) {
			err = fmt.Errorf("logits of shape %v, want %v: %w", t.Shape(), want, api.ErrCorrupt)
		}
		return t, n, err
	}
	if errors.Is(err, errUseFile) { // the whole stream is at the start of the model's memfd
		h, err = wire.ReadTensor(io.NewSectionReader(m.result, 0, size), size)
	}
	if err != nil {
		return nil, 0, err
	}
	if h.DType != api.F32 {
		return nil, 0, fmt.Errorf("logits are %s: %w", h.DType, api.ErrDType)
	}
	if !h.Shape.Equal(want) {
		return nil, 0, fmt.Errorf("logits of shape %v, want %v: %w", h.Shape, want, api.ErrCorrupt)
	}
	if f, ok := wire.Float32s(h.Data); ok {
		return m.host.WrapFloat32s(f, h.Shape...), n, nil
	}
	t := m.host.Alloc(api.F32, h.Shape...)
	m.host.Upload(t, h.Data)
	return t, n, nil
}

// State is a recurrent state that lives in the plugin process. It counts
// the tokens its sequences have consumed as the plugin's state does: the
// most any has (n) from the plugin's answers, and each one's (lens) from
// what it sent, when they differ.
type State struct {
	m      *Model
	id     uint64
	batch  int
	n      int
	lens   []int      // each sequence's tokens when they differ; nil: all n
	step   api.Tensor // the last Step's logits, reused
	shared []byte     // the plugin's memfd of Step logits, mapped; nil: none
	socket string     // the plugin's step socket ("": steps are gRPC calls)
	conn   net.Conn   // the connection to it, dialled at the first step
	frame  []byte     // the step frame, reused
	closed bool
}

// NewState makes a state in the plugin.
func (m *Model) NewState(batch int) (api.State, error) {
	var ref *pb.StateRef
	err := m.call(context.Background(), "new state", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) (err error) {
		ref, err = c.NewState(ctx, &pb.NewStateRequest{Model: m.id, Batch: int64(batch)}, o...)
		return err
	})
	if err != nil {
		return nil, err
	}
	st := &State{m: m, id: ref.State, batch: batch}
	if ref.LogitsFd > 0 {
		if pid := m.p.pid(m.gen); pid > 0 {
			st.shared, _ = mapShared(pid, int(ref.LogitsFd), int(ref.LogitsBytes)) // nil: replies carry them
		}
	}
	if st.shared != nil {
		st.socket = ref.StepSocket
	}
	return st, nil
}

// state checks that s is a live state of m.
func (m *Model) state(s api.State) (*State, error) {
	st, ok := s.(*State)
	if !ok || st.m != m {
		return nil, fmt.Errorf("plugin %s: a state of another model (%T): %w", m.p, s, api.ErrShape)
	}
	if st.closed {
		return nil, fmt.Errorf("plugin %s: the state is closed: %w", m.p, api.ErrNotFound)
	}
	return st, nil
}

// Prefill continues s over the sequences in the plugin.
func (m *Model) Prefill(ctx context.Context, s api.State, ids [][]int32, f api.Form) (api.Tensor, error) {
	return m.prefill(ctx, s, ids, f, false)
}

// PrefillLast is Prefill returning the logits of the last position alone,
// [B,V] (generate.LastLogitsPrefiller): the plugin computes and sends only
// those. A plugin built before PrefillRequest.last sends every position's,
// and the host keeps the last. Sequences of different lengths are
// api.ErrShape, as the models' PrefillLast answers them.
func (m *Model) PrefillLast(ctx context.Context, s api.State, ids [][]int32, f api.Form) (api.Tensor, error) {
	if !m.last && !api.Ragged(ids) {
		t, err := m.prefill(ctx, s, ids, f, false)
		if err != nil {
			return nil, err
		}
		defer m.host.Free(t)
		return wire.LastRows(t)
	}
	return m.prefill(ctx, s, ids, f, true)
}

// prefill runs Prefill in the plugin, for every position's logits or
// (last) the last one's. Sequences of different lengths go, padded, to a
// plugin whose model is packed (ModelInfo.packed), each continuing its
// own state; to any other they are refused (api.ErrUnsupported), and with
// last always (api.ErrShape: they have no one last position), before
// anything is sent.
func (m *Model) prefill(ctx context.Context, s api.State, ids [][]int32, f api.Form, last bool) (api.Tensor, error) {
	st, err := m.state(s)
	if err != nil {
		return nil, err
	}
	if api.Ragged(ids) {
		if last {
			return nil, fmt.Errorf("plugin %s: prefill of the last logits of sequences of different lengths: they end at different positions: %w", m.p, api.ErrShape)
		}
		if !m.info.Packed {
			return nil, fmt.Errorf("plugin %s: prefill of sequences of different lengths: the plugin's %s model does not take them (ModelInfo.packed is false; a plugin built before packed batches, or a model without Info.Packed): %w",
				m.p, m.info.Arch, api.ErrUnsupported)
		}
	}
	enc, lengths, err := wire.EncodeRagged(ids)
	if err != nil {
		return nil, err
	}
	if len(ids) != st.batch {
		return nil, fmt.Errorf("plugin %s: prefill of %d sequences into a state of %d: %w", m.p, len(ids), st.batch, api.ErrShape)
	}
	T := 0
	for _, seq := range ids {
		T = max(T, len(seq))
	}
	want := api.Shape{len(ids), T, m.cfg.Vocab()}
	if last {
		want = api.Shape{len(ids), m.cfg.Vocab()}
	}
	var out api.Tensor
	n := 0
	err = m.call(ctx, "prefill", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		stream, err := c.Prefill(ctx, &pb.PrefillRequest{Model: m.id, State: st.id, Ids: enc, Lengths: lengths, Form: &pb.Form{Mode: int32(f.Mode), Chunk: int64(f.Chunk)}, Shared: sharedFiles, Remote: m.p.remote, Last: last}, o...)
		if err != nil {
			return err
		}
		out, n, err = m.streamedLogits(stream, want)
		return err
	})
	if err != nil {
		return nil, err
	}
	lens := st.Lens()
	for b, seq := range ids {
		lens[b] += len(seq)
	}
	if err := st.advance(n, lens); err != nil {
		m.host.Free(out)
		return nil, err
	}
	return out, nil
}

// advance records the plugin's answer that the state has consumed n tokens
// (the most any sequence has), its sequences lens by the host's count. A
// count that does not agree is api.ErrCorrupt, and the plugin's n stands,
// every sequence at it.
func (s *State) advance(n int, lens []int) error {
	tokens, per := api.CompactLens(lens)
	if tokens != n {
		s.n, s.lens = n, nil
		return fmt.Errorf("plugin %s: the plugin's state is at %d tokens, its sequences at %v by the host's count: %w", s.m.p, n, lens, api.ErrCorrupt)
	}
	s.n, s.lens = n, per
	return nil
}

// Step feeds one token per sequence in the plugin; the logits tensor
// belongs to s.
func (m *Model) Step(ctx context.Context, s api.State, ids []int32) (api.Tensor, error) {
	st, err := m.state(s)
	if err != nil {
		return nil, err
	}
	if st.socket != "" {
		return m.frameStep(ctx, st, ids)
	}
	var resp *pb.Logits
	err = m.call(ctx, "step", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) (err error) {
		resp, err = c.Step(ctx, &pb.StepRequest{Model: m.id, State: st.id, Ids: ids, Shared: st.shared != nil}, o...)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := st.stepped(int(resp.Len)); err != nil {
		return nil, err
	}
	if len(resp.Arrow) == 0 && st.shared != nil {
		if st.step == nil {
			st.step = m.host.Alloc(api.F32, len(ids), m.cfg.Vocab())
		}
		m.host.Upload(st.step, st.shared)
		return st.step, nil
	}
	st.step, err = m.stepLogits(resp, st.step)
	return st.step, err
}

// frameStep runs a step as a frame on the plugin's step socket, under the
// same deadline and with the same handling of a dead or hung plugin as a
// gRPC call; the logits arrive in the shared memory.
func (m *Model) frameStep(ctx context.Context, st *State, ids []int32) (api.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("plugin %s: step: %w", m.p, err)
	}
	if m.closed {
		return nil, fmt.Errorf("plugin %s: step: the model is closed: %w", m.p, api.ErrNotFound)
	}
	if m.p.pid(m.gen) == 0 {
		return nil, fmt.Errorf("plugin %s: step: the plugin process it lived in has exited: %w", m.p, api.ErrNotFound)
	}
	if st.conn == nil {
		c, err := net.Dial("unix", st.socket)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: step socket: %v: %w", m.p, err, api.ErrInternal)
		}
		st.conn = c
	}
	deadline := time.Now().Add(m.p.opts.CallTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	st.conn.SetDeadline(deadline)
	st.frame = wire.StepFrame(st.frame[:0], m.id, st.id, ids)
	n, err := st.conn.Write(st.frame)
	if err == nil && n == len(st.frame) {
		n, err = wire.ReadStepReply(st.conn)
	}
	if err != nil {
		var se *wire.StepError
		if errors.As(err, &se) {
			return nil, &RemoteError{Plugin: m.p.String(), Op: "step", Msg: se.Msg, kind: wire.KindError(se.Kind)}
		}
		st.conn.Close()
		st.conn = nil
		m.p.restart(m.gen)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("plugin %s: step: no answer within %s; the plugin was stopped: %w", m.p, m.p.opts.CallTimeout, context.DeadlineExceeded)
		}
		return nil, fmt.Errorf("plugin %s: step: the plugin process exited or crashed (%v): %w", m.p, err, api.ErrInternal)
	}
	if err := st.stepped(n); err != nil {
		return nil, err
	}
	if st.step == nil {
		st.step = m.host.Alloc(api.F32, len(ids), m.cfg.Vocab())
	}
	m.host.Upload(st.step, st.shared)
	return st.step, nil
}

// stepped records a Step the plugin answered with the state at n tokens:
// one more for every sequence.
func (s *State) stepped(n int) error {
	if s.lens == nil {
		s.n = n
		return nil
	}
	lens := slices.Clone(s.lens)
	for b := range lens {
		lens[b]++
	}
	return s.advance(n, lens)
}

// Batch returns the number of sequences.
func (s *State) Batch() int { return s.batch }

// Len returns the tokens consumed per sequence: the most any has, after a
// Prefill of sequences of different lengths.
func (s *State) Len() int { return s.n }

// Lens returns the tokens each sequence has consumed (api.SequenceLens).
func (s *State) Lens() []int {
	if s.lens != nil {
		return slices.Clone(s.lens)
	}
	lens := make([]int, s.batch)
	for b := range lens {
		lens[b] = s.n
	}
	return lens
}

// Reset empties the state in the plugin.
func (s *State) Reset() error {
	if s.closed {
		return fmt.Errorf("plugin %s: the state is closed: %w", s.m.p, api.ErrNotFound)
	}
	err := s.m.call(context.Background(), "reset state", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		_, err := c.ResetState(ctx, &pb.StateRef{Model: s.m.id, State: s.id}, o...)
		return err
	})
	if err == nil {
		s.n, s.lens = 0, nil
	}
	return err
}

// Close frees the state in the plugin.
func (s *State) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	unmapShared(s.shared)
	s.shared = nil
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.m.closed {
		return nil
	}
	return s.m.call(context.Background(), "free state", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		_, err := c.FreeState(ctx, &pb.StateRef{Model: s.m.id, State: s.id}, o...)
		return err
	})
}

// stateSaver checks that s is a live state of m and that the plugin's
// model saves and loads its states (api.ErrUnsupported otherwise).
func (m *Model) stateSaver(s api.State) (*State, error) {
	st, err := m.state(s)
	if err != nil {
		return nil, err
	}
	if !m.saver {
		return nil, fmt.Errorf("plugin %s: %s model: state snapshots: the plugin's model does not save its states: %w", m.p, m.info.Arch, api.ErrUnsupported)
	}
	return st, nil
}

// SaveState implements api.StateSaver: the plugin sends a copy of the
// state's contents, in pieces of at most 4 MiB. A model whose plugin model
// does not save its states gives an error wrapping api.ErrUnsupported.
func (m *Model) SaveState(ctx context.Context, s api.State) (api.StateSnapshot, error) {
	st, err := m.stateSaver(s)
	if err != nil {
		return api.StateSnapshot{}, err
	}
	var snap api.StateSnapshot
	var bad error // what was wrong with the stream, rather than the call
	err = m.call(ctx, "save state", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		stream, err := c.SaveState(ctx, &pb.StateRef{Model: m.id, State: st.id}, o...)
		if err != nil {
			return err
		}
		var r *wire.PieceReader
		for {
			msg, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			switch h := msg.Header; {
			case r == nil && h == nil:
				bad = fmt.Errorf("the stream does not start with a header: %w", api.ErrCorrupt)
			case r != nil && h != nil:
				bad = fmt.Errorf("a second header: %w", api.ErrCorrupt)
			case h != nil:
				if h.Batch != int64(st.batch) {
					bad = fmt.Errorf("a state of %d sequences at %d tokens, for a state of %d: %w", h.Batch, h.Tokens, st.batch, api.ErrCorrupt)
				} else if snap, bad = wire.DecodeStateHeader(h); bad == nil {
					r, bad = wire.NewPieceReader(h.Tensors)
				}
			}
			if bad == nil {
				bad = r.Add(msg.Pieces)
			}
			if bad != nil {
				return bad
			}
		}
		if r == nil {
			bad = fmt.Errorf("an empty stream: %w", api.ErrCorrupt)
		} else {
			snap.Tensors, bad = r.Tensors()
		}
		return bad
	})
	if bad != nil {
		return api.StateSnapshot{}, fmt.Errorf("plugin %s: save state: %w", m.p, bad)
	}
	return snap, err
}

// LoadState implements api.StateSaver: the host sends snap's tensors to
// the plugin, in pieces of at most 4 MiB, and the plugin's model loads
// them into s. A snapshot of another batch is refused here (api.ErrShape)
// before anything is sent.
func (m *Model) LoadState(ctx context.Context, s api.State, snap api.StateSnapshot) error {
	st, err := m.stateSaver(s)
	if err != nil {
		return err
	}
	if snap.Batch != st.batch {
		return fmt.Errorf("plugin %s: load state: a state of %d sequences into a state of %d: %w", m.p, snap.Batch, st.batch, api.ErrShape)
	}
	header, err := wire.EncodeStateHeader(snap) // CheckLens: api.ErrCorrupt
	if err != nil {
		return fmt.Errorf("plugin %s: load state: %w", m.p, err)
	}
	header.Model, header.State = m.id, st.id
	for _, t := range snap.Tensors {
		if err := t.Shape.Validate(); err != nil || len(t.Data) != t.DType.Bytes(t.Shape.NumElements()) {
			return fmt.Errorf("plugin %s: load state: tensor %s %s%v of %d bytes: %w", m.p, t.Name, t.DType, t.Shape, len(t.Data), api.ErrShape)
		}
	}
	var bad error // what was wrong with the tensors, rather than the call
	err = m.call(ctx, "load state", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		stream, err := c.LoadState(ctx, o...)
		if err != nil {
			return err
		}
		header := header // a retried call sends it again
		var sendErr error
		err = wire.WritePieces(snap.Tensors, func(ps []*pb.TensorPiece) error {
			msg := &pb.StateChunk{Header: header, Pieces: ps}
			header = nil
			sendErr = stream.Send(msg)
			return sendErr
		})
		switch {
		case sendErr == io.EOF:
			// The plugin answered before reading everything (a refusal);
			// its answer comes with CloseAndRecv.
		case sendErr != nil:
			return sendErr
		case err != nil:
			bad = err
			return err
		}
		_, err = stream.CloseAndRecv()
		return err
	})
	if bad != nil {
		return fmt.Errorf("plugin %s: load state: %w", m.p, bad)
	}
	if err == nil {
		st.n, st.lens = snap.Tokens, nil
		if _, per := api.CompactLens(snap.Lens); per != nil {
			st.lens = per
		}
	}
	return err
}

// TrainStep runs one optimisation step in the plugin. A micro-batch of
// rows of different lengths or with document starts (api.Batch.Starts) is
// sent with its layout to a plugin whose model is packed
// (ModelInfo.packed), and refused (api.ErrUnsupported) for any other,
// before anything is sent.
func (m *Model) TrainStep(ctx context.Context, req api.TrainStepRequest) (api.TrainStepResult, error) {
	opt, err := json.Marshal(req.Optimizer)
	if err != nil {
		return api.TrainStepResult{}, err
	}
	r := &pb.TrainStepRequest{Model: m.id, OptimizerJson: opt, Lr: req.LR, ClipNorm: req.ClipNorm}
	layouts := make([]*pb.BatchLayout, len(req.Batches))
	packed := false
	for i, b := range req.Batches {
		in, tg, layout, err := wire.EncodeBatch(b)
		if err != nil {
			return api.TrainStepResult{}, fmt.Errorf("train step: batch %d: %w", i, err)
		}
		if layout != nil && !m.info.Packed {
			return api.TrainStepResult{}, fmt.Errorf("plugin %s: train step: batch %d has rows of different lengths or document starts, and the plugin's %s model takes neither (ModelInfo.packed is false; a plugin built before packed batches, or a model without Info.Packed): %w",
				m.p, i, m.info.Arch, api.ErrUnsupported)
		}
		if layout != nil {
			packed = true
			layouts[i] = layout
		} else {
			layouts[i] = &pb.BatchLayout{}
		}
		r.Batches = append(r.Batches, in, tg)
	}
	if packed {
		r.Layouts = layouts
	}
	var resp *pb.TrainStepResponse
	err = m.call(ctx, "train step", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) (err error) {
		resp, err = c.TrainStep(ctx, r, o...)
		return err
	})
	if err != nil {
		return api.TrainStepResult{}, err
	}
	return api.TrainStepResult{Loss: resp.Loss, GradNorm: resp.GradNorm}, nil
}

// OptimizerState reads the optimizer's state from the plugin.
func (m *Model) OptimizerState(ctx context.Context) (api.OptimizerState, error) {
	var resp *pb.OptimizerStateMessage
	err := m.call(ctx, "optimizer state", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) (err error) {
		resp, err = c.OptimizerState(ctx, &pb.ModelRef{Model: m.id}, o...)
		return err
	})
	if err != nil {
		return api.OptimizerState{}, err
	}
	ts, err := wire.DecodeTensors(resp.Arrow)
	if err != nil {
		return api.OptimizerState{}, fmt.Errorf("plugin %s: optimizer state: %w", m.p, err)
	}
	return api.OptimizerState{Steps: resp.Steps, Tensors: ts}, nil
}

// SetOptimizerState replaces the optimizer's state in the plugin.
func (m *Model) SetOptimizerState(ctx context.Context, cfg api.OptimizerConfig, s api.OptimizerState) error {
	opt, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	enc, err := wire.EncodeTensors(s.Tensors)
	if err != nil {
		return err
	}
	return m.call(ctx, "set optimizer state", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		_, err := c.SetOptimizerState(ctx, &pb.OptimizerStateMessage{Model: m.id, OptimizerJson: opt, Steps: s.Steps, Arrow: enc}, o...)
		return err
	})
}

// SaveDir has the plugin write the model into dir (a path on this
// machine, which the plugin's process shares).
func (m *Model) SaveDir(ctx context.Context, dir string, storage api.DType) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("save model %s: %w", dir, err)
	}
	return m.call(ctx, "save "+dir, func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		_, err := c.Save(ctx, &pb.SaveRequest{Model: m.id, Dir: abs, Dtype: storage.String()}, o...)
		return err
	})
}

// Close unloads the model from the plugin.
func (m *Model) Close() error {
	if m.closed {
		return nil
	}
	if m.result != nil {
		m.result.Close()
	}
	err := m.call(context.Background(), "unload", func(ctx context.Context, c pb.RuntimeClient, o ...grpc.CallOption) error {
		_, err := c.Unload(ctx, &pb.ModelRef{Model: m.id}, o...)
		return err
	})
	m.closed = true
	return err
}
