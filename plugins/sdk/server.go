package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/checkpoint"
	"github.com/densessm/densessm/plugins/internal/wire"
	pb "github.com/densessm/densessm/plugins/proto"
	"github.com/densessm/densessm/train"
)

// server implements the Runtime service over the models of this process.
type server struct {
	pb.UnimplementedRuntimeServer
	p Plugin

	sockOnce sync.Once
	sockName string // the step socket's name, "" when there is none

	mu     sync.Mutex
	next   uint64
	models map[uint64]*served
}

// served is one model and its states; its mutex serialises the requests
// on it (a model is not safe for concurrent use).
type served struct {
	mu      sync.Mutex
	m       api.Model
	stepper api.TrainStepper
	states  map[uint64]*state
	next    uint64
	result  *os.File // the memfd large results are written into, reused
	keep    []byte   // a large result the host reads from this process's memory, until its next request
}

// state is a recurrent state and the memory its Step logits are shared
// through (nil: none).
type state struct {
	api.State
	shared *sharedLogits
}

// Close closes the state and frees its shared memory.
func (s *state) Close() error { return errors.Join(s.State.Close(), s.shared.close()) }

func newServer(p Plugin) *server { return &server{p: p, models: map[uint64]*served{}} }

// NewServer returns the Runtime service for p, served in this process: for
// tests and for embedding a plugin's service elsewhere.
func NewServer(p Plugin) (pb.RuntimeServer, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	return newServer(p), nil
}

// unaryErrors recovers a handler's panic into an internal error and turns
// an error into a gRPC status whose trailer names its api kind.
func unaryErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, panicError(info.FullMethod, r)
		}
		err = statusError(err, func(md metadata.MD) { grpc.SetTrailer(ctx, md) })
	}()
	return handler(ctx, req)
}

// streamErrors is unaryErrors for the streaming handlers.
func streamErrors(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(info.FullMethod, r)
		}
		err = statusError(err, ss.SetTrailer)
	}()
	return handler(srv, ss)
}

// panicError logs a handler's panic with its stack and returns it as an
// internal error.
func panicError(method string, r any) error {
	fmt.Fprintf(os.Stderr, "panic in %s: %v\n%s", method, r, stack())
	return fmt.Errorf("%s: panic: %v: %w", method, r, api.ErrInternal)
}

// statusError turns err into a gRPC status, naming its api kind in the
// trailer it sets.
func statusError(err error, setTrailer func(metadata.MD)) error {
	if err == nil {
		return nil
	}
	kind := wire.ErrorKind(err)
	if kind != "" {
		setTrailer(metadata.Pairs(wire.ErrorTrailer, kind))
	}
	if _, ok := status.FromError(err); !ok || kind != "" {
		err = status.Error(code(kind), err.Error())
	}
	return err
}

// code is the gRPC code of an error kind, for clients that read no
// trailer.
func code(kind string) codes.Code {
	switch kind {
	case "config", "shape", "dtype", "out-of-range":
		return codes.InvalidArgument
	case "not-found":
		return codes.NotFound
	case "unsupported":
		return codes.Unimplemented
	case "corrupt":
		return codes.DataLoss
	case "out-of-memory":
		return codes.ResourceExhausted
	case "canceled":
		return codes.Canceled
	case "deadline":
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

func (s *server) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	return &pb.DescribeResponse{
		Name: s.p.Name, Version: s.p.Version,
		Architectures: s.p.Architectures, Backends: s.p.backends(),
		DensessmVersion: moduleVersion(),
		ProbeAddr:       uint64(uintptr(unsafe.Pointer(unsafe.SliceData(wire.Probe)))),
		ProbeLen:        int64(len(wire.Probe)),
	}, nil
}

// architecture returns the served architecture name.
func (s *server) architecture(name string) (api.Architecture, error) {
	if !slices.Contains(s.p.Architectures, name) {
		return nil, fmt.Errorf("plugin %s serves no architecture %q (it serves %v): %w", s.p.Name, name, s.p.Architectures, api.ErrNotFound)
	}
	return api.LookupArchitecture(name)
}

func (s *server) ParseConfig(_ context.Context, req *pb.ConfigRequest) (*pb.ConfigResponse, error) {
	a, err := s.architecture(req.Arch)
	if err != nil {
		return nil, err
	}
	cfg := a.DefaultConfig()
	if len(req.ConfigJson) > 0 {
		if cfg, err = a.ParseConfig(req.ConfigJson); err != nil {
			return nil, err
		}
	}
	return configResponse(cfg)
}

func configResponse(cfg api.Config) (*pb.ConfigResponse, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("config: %v: %w", err, api.ErrInternal)
	}
	return &pb.ConfigResponse{ConfigJson: raw, Vocab: int64(cfg.Vocab())}, nil
}

// buildOptions reads the wire's build options, checking the backend.
func (s *server) buildOptions(o *pb.BuildOptions) (api.BuildOptions, error) {
	out := api.BuildOptions{
		Backend:        o.GetBackend(),
		BackendOptions: api.BackendOptions{Threads: int(o.GetThreads()), MaxMemory: o.GetMaxMemory()},
		Seed:           o.GetSeed(),
		Zeros:          o.GetZeros(),
	}
	if w := o.GetWeights(); w != "" {
		d, err := api.ParseWeightDType(w)
		if err != nil {
			return api.BuildOptions{}, err
		}
		out.Weights = d
	}
	if name := out.BackendName(); !slices.Contains(s.p.backends(), name) {
		return api.BuildOptions{}, fmt.Errorf("plugin %s has no backend %q (it has %v): %w", s.p.Name, name, s.p.backends(), api.ErrNotFound)
	}
	return out, nil
}

func (s *server) Build(ctx context.Context, req *pb.BuildRequest) (*pb.ModelInfo, error) {
	a, err := s.architecture(req.Arch)
	if err != nil {
		return nil, err
	}
	build, err := s.buildOptions(req.Build)
	if err != nil {
		return nil, err
	}
	cfg, err := a.ParseConfig(req.ConfigJson)
	if err != nil {
		return nil, err
	}
	m, err := a.New(ctx, cfg, build)
	if err != nil {
		return nil, err
	}
	return s.add(m)
}

func (s *server) Load(ctx context.Context, req *pb.LoadRequest) (*pb.ModelInfo, error) {
	if req.Arch != "" {
		if _, err := s.architecture(req.Arch); err != nil {
			return nil, err
		}
	}
	build, err := s.buildOptions(req.Build)
	if err != nil {
		return nil, err
	}
	m, err := checkpoint.LoadModel(ctx, req.Dir, checkpoint.LoadOptions{
		Build: build, Arch: req.Arch, AllowExtra: req.AllowExtra, AllowNonFinite: req.AllowNonfinite,
	})
	if err != nil {
		return nil, err
	}
	if !slices.Contains(s.p.Architectures, m.Info().Arch) {
		m.Close()
		return nil, fmt.Errorf("plugin %s: %s is a %s model, which it does not serve: %w", s.p.Name, req.Dir, m.Info().Arch, api.ErrNotFound)
	}
	return s.add(m)
}

// add registers a new model and describes it.
func (s *server) add(m api.Model) (*pb.ModelInfo, error) {
	cfg, err := configResponse(m.Config())
	if err != nil {
		m.Close()
		return nil, err
	}
	info := m.Info()
	out := &pb.ModelInfo{
		Arch: info.Arch, ConfigJson: cfg.ConfigJson, Vocab: cfg.Vocab,
		Backend: info.Backend, Threads: int64(info.Threads), Trainable: info.Trainable, Weights: weightsName(info.Weights),
		Packed: info.Packed,
	}
	_, out.StateSaver = m.(api.StateSaver)
	out.PrefillLast = true // Prefill answers last (lastLogits)
	for _, mode := range info.Modes {
		out.Modes = append(out.Modes, int32(mode))
	}
	for _, p := range m.Params() {
		pi := &pb.ParamInfo{Name: p.Name, Dtype: p.DType.String()}
		for _, d := range p.Shape {
			pi.Shape = append(pi.Shape, int64(d))
		}
		out.Params = append(out.Params, pi)
	}
	s.mu.Lock()
	s.next++
	out.Model = s.next
	s.models[out.Model] = &served{m: m, states: map[uint64]*state{}}
	s.mu.Unlock()
	return out, nil
}

// model returns the served model id, locked; the caller unlocks it.
func (s *server) model(id uint64) (*served, error) {
	s.mu.Lock()
	m, ok := s.models[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("model %d: %w", id, api.ErrNotFound)
	}
	m.mu.Lock()
	m.keep = nil // the host has read it: it asks for nothing else before
	return m, nil
}

// state returns the served model id, locked (the caller unlocks it), and
// its state stateID.
func (s *server) state(id, stateID uint64) (*served, *state, error) {
	m, err := s.model(id)
	if err != nil {
		return nil, nil, err
	}
	st, ok := m.states[stateID]
	if !ok {
		m.mu.Unlock()
		return nil, nil, fmt.Errorf("state %d: %w", stateID, api.ErrNotFound)
	}
	return m, st, nil
}

func (s *server) ReadParams(ctx context.Context, req *pb.ParamsRequest) (*pb.Tensors, error) {
	m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	values, err := m.m.ReadParams(ctx, req.Names)
	if err != nil {
		return nil, err
	}
	enc, err := wire.EncodeTensors(values)
	if err != nil {
		return nil, err
	}
	return &pb.Tensors{Arrow: enc}, nil
}

func (s *server) WriteParams(ctx context.Context, req *pb.WriteParamsRequest) (*pb.Empty, error) {
	values, err := wire.DecodeTensors(req.Arrow)
	if err != nil {
		return nil, err
	}
	m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	return &pb.Empty{}, m.m.WriteParams(ctx, values)
}

func form(f *pb.Form) api.Form {
	return api.Form{Mode: api.Mode(f.GetMode()), Chunk: int(f.GetChunk())}
}

// hostLogits is a logits tensor as the wire sends it (no copy).
func hostLogits(t api.Tensor) api.HostTensor {
	return api.HostTensor{Name: "logits", DType: t.DType(), Shape: t.Shape(), Data: wire.TensorBytes(t)}
}

// logits encodes a small logits tensor (a step's), with the state's
// length.
func logits(t api.Tensor, n int) (*pb.Logits, error) {
	b, err := wire.EncodeTensor(hostLogits(t))
	if err != nil {
		return nil, err
	}
	return &pb.Logits{Arrow: b, Len: int64(n)}, nil
}

// sharedResult is the least size of logits sent through the model's
// memfd rather than in chunks when the host can read one.
const sharedResult = 1 << 20

// streamLogits sends a logits tensor, with the state's length: written at
// the start of the model's result memfd when the host can read it and the
// tensor is large (the memfd is reused, so that its pages are not
// allocated and freed at each call), else in chunks.
func (m *served) streamLogits(stream grpc.ServerStreamingServer[pb.Chunk], t api.Tensor, n int, shared, remote bool) error {
	h := hostLogits(t)
	if remote && len(h.Data) >= sharedResult {
		m.keep = h.Data
		r := &pb.RemoteTensor{Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(h.Data)))), Bytes: int64(len(h.Data)), Dtype: h.DType.String()}
		for _, d := range h.Shape {
			r.Shape = append(r.Shape, int64(d))
		}
		return stream.Send(&pb.Chunk{Remote: r, Len: int64(n)})
	}
	if shared && len(h.Data) >= sharedResult {
		if m.result == nil {
			m.result = newResultFile()
		}
		if f := m.result; f != nil {
			var off int64
			err := wire.WriteTensorStream(h, func(b []byte) error {
				_, err := f.WriteAt(b, off)
				off += int64(len(b))
				return err
			})
			if err != nil {
				return err
			}
			return stream.Send(&pb.Chunk{Fd: int64(f.Fd()), Len: int64(n)})
		}
	}
	return wire.WriteTensorStream(h, func(b []byte) error {
		return stream.Send(&pb.Chunk{Data: b, Len: int64(n)})
	})
}

func (s *server) Forward(req *pb.ForwardRequest, stream grpc.ServerStreamingServer[pb.Chunk]) error {
	ids, err := wire.DecodeRagged(req.Ids, req.Lengths)
	if err != nil {
		return err
	}
	m, err := s.model(req.Model)
	if err != nil {
		return err
	}
	defer m.mu.Unlock()
	if len(req.Lengths) > 0 {
		if err := m.packed("forward of sequences of different lengths"); err != nil {
			return err
		}
	}
	t, err := m.m.Forward(stream.Context(), ids, form(req.Form))
	if err != nil {
		return err
	}
	return m.streamLogits(stream, t, 0, req.Shared, req.Remote)
}

func (s *server) NewState(_ context.Context, req *pb.NewStateRequest) (*pb.StateRef, error) {
	m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	st, err := m.m.NewState(int(req.Batch))
	if err != nil {
		return nil, err
	}
	m.next++
	n := int(req.Batch) * m.m.Config().Vocab() * 4
	entry := &state{State: st, shared: newSharedLogits(n)}
	m.states[m.next] = entry
	ref := &pb.StateRef{Model: req.Model, State: m.next}
	if entry.shared != nil {
		ref.LogitsFd, ref.LogitsBytes = int64(entry.shared.fd), int64(n)
		ref.StepSocket = s.stepSocket()
	}
	return ref, nil
}

// Prefill continues a state over the request's sequences: rows of
// different lengths (PrefillRequest.lengths) are cut back to them and go
// to the model's Prefill as they are, when the model takes them
// (Info.Packed; api.ErrUnsupported otherwise). They have no one last
// position: with last they are api.ErrShape, as the models' PrefillLast
// answers them.
func (s *server) Prefill(req *pb.PrefillRequest, stream grpc.ServerStreamingServer[pb.Chunk]) error {
	if req.Last && len(req.Lengths) > 0 {
		return fmt.Errorf("prefill of the last logits of sequences of different lengths: they end at different positions: %w", api.ErrShape)
	}
	ids, err := wire.DecodeRagged(req.Ids, req.Lengths)
	if err != nil {
		return err
	}
	m, st, err := s.state(req.Model, req.State)
	if err != nil {
		return err
	}
	defer m.mu.Unlock()
	if len(req.Lengths) > 0 {
		if err := m.packed("prefill of sequences of different lengths"); err != nil {
			return err
		}
	}
	prefill := m.m.Prefill
	if req.Last {
		prefill = func(ctx context.Context, s api.State, ids [][]int32, f api.Form) (api.Tensor, error) {
			return lastLogits(ctx, m.m, s, ids, f)
		}
	}
	t, err := prefill(stream.Context(), st.State, ids, form(req.Form))
	if err != nil {
		return err
	}
	return m.streamLogits(stream, t, st.Len(), req.Shared, req.Remote)
}

// lastLogitsPrefiller is generate.LastLogitsPrefiller: a model whose
// Prefill can compute the last position's logits alone.
type lastLogitsPrefiller interface {
	PrefillLast(ctx context.Context, s api.State, ids [][]int32, f api.Form) (api.Tensor, error)
}

// lastLogits is Prefill returning the logits of the last position alone,
// [B,V]: the model's PrefillLast when it has one, else the last rows of
// its Prefill's.
func lastLogits(ctx context.Context, m api.Model, s api.State, ids [][]int32, f api.Form) (api.Tensor, error) {
	if lp, ok := m.(lastLogitsPrefiller); ok {
		return lp.PrefillLast(ctx, s, ids, f)
	}
	t, err := m.Prefill(ctx, s, ids, f)
	if err != nil {
		return nil, err
	}
	defer t.Backend().Free(t)
	return wire.LastRows(t)
}

func (s *server) Step(ctx context.Context, req *pb.StepRequest) (*pb.Logits, error) {
	return s.step(ctx, req.Model, req.State, req.Ids, req.Shared)
}

// step runs a Step. With shared, the logits go into the state's memfd and
// the reply carries none.
func (s *server) step(ctx context.Context, model, state uint64, ids []int32, shared bool) (*pb.Logits, error) {
	m, st, err := s.state(model, state)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	t, err := m.m.Step(ctx, st.State, ids)
	if err != nil {
		return nil, err
	}
	if shared {
		if st.shared == nil {
			return nil, fmt.Errorf("a shared step of a state with no shared logits: %w", api.ErrInternal)
		}
		b := wire.TensorBytes(t)
		if len(b) != len(st.shared.mem) {
			return nil, fmt.Errorf("step logits of %d bytes for a shared buffer of %d: %w", len(b), len(st.shared.mem), api.ErrInternal)
		}
		copy(st.shared.mem, b)
		return &pb.Logits{Len: int64(st.Len())}, nil
	}
	return logits(t, st.Len())
}

func (s *server) ResetState(_ context.Context, req *pb.StateRef) (*pb.Empty, error) {
	m, st, err := s.state(req.Model, req.State)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	return &pb.Empty{}, st.Reset()
}

func (s *server) FreeState(_ context.Context, req *pb.StateRef) (*pb.Empty, error) {
	m, st, err := s.state(req.Model, req.State)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	delete(m.states, req.State)
	return &pb.Empty{}, st.Close()
}

// stateSaver returns the served model as an api.StateSaver, or an error
// wrapping api.ErrUnsupported.
func (m *served) stateSaver() (api.StateSaver, error) {
	if sv, ok := m.m.(api.StateSaver); ok {
		return sv, nil
	}
	return nil, fmt.Errorf("%s model: state snapshots: the model does not save its states: %w", m.m.Info().Arch, api.ErrUnsupported)
}

// SaveState sends a copy of the state's contents: the header, then the
// tensors in pieces (wire.WritePieces).
func (s *server) SaveState(req *pb.StateRef, stream grpc.ServerStreamingServer[pb.StateChunk]) error {
	m, st, err := s.state(req.Model, req.State)
	if err != nil {
		return err
	}
	defer m.mu.Unlock()
	sv, err := m.stateSaver()
	if err != nil {
		return err
	}
	snap, err := sv.SaveState(stream.Context(), st.State)
	if err != nil {
		return err
	}
	header, err := wire.EncodeStateHeader(snap)
	if err != nil {
		return fmt.Errorf("save state: the model's snapshot: %w", err)
	}
	return wire.WritePieces(snap.Tensors, func(ps []*pb.TensorPiece) error {
		c := &pb.StateChunk{Header: header, Pieces: ps}
		header = nil
		return stream.Send(c)
	})
}

// LoadState reads a state's contents as SaveState sends them and loads
// them into the state its header names. A model that cannot, or a state
// that is not there, is answered before the tensors are read.
func (s *server) LoadState(stream grpc.ClientStreamingServer[pb.StateChunk, pb.Empty]) error {
	first, err := stream.Recv()
	if err == io.EOF {
		return fmt.Errorf("load state: an empty stream: %w", api.ErrCorrupt)
	}
	if err != nil {
		return err
	}
	h := first.Header
	if h == nil {
		return fmt.Errorf("load state: the stream does not start with a header: %w", api.ErrCorrupt)
	}
	snap, err := wire.DecodeStateHeader(h)
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	m, _, err := s.state(h.Model, h.State)
	if err != nil {
		return err
	}
	_, err = m.stateSaver()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	r, err := wire.NewPieceReader(h.Tensors)
	if err != nil {
		return err
	}
	for c := first; ; {
		if c.Header != nil && c != first {
			return fmt.Errorf("load state: a second header: %w", api.ErrCorrupt)
		}
		if err := r.Add(c.Pieces); err != nil {
			return fmt.Errorf("load state: %w", err)
		}
		if c, err = stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	ts, err := r.Tensors()
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	m, st, err := s.state(h.Model, h.State) // again: it was unlocked while the tensors came
	if err != nil {
		return err
	}
	defer m.mu.Unlock()
	sv, err := m.stateSaver()
	if err != nil {
		return err
	}
	snap.Tensors = ts
	if err := sv.LoadState(stream.Context(), st.State, snap); err != nil {
		return err
	}
	return stream.SendAndClose(&pb.Empty{})
}

// packed returns an error wrapping api.ErrUnsupported, naming what, when
// the model does not take variable-length and packed batches (Info.Packed).
func (m *served) packed(what string) error {
	if info := m.m.Info(); !info.Packed {
		return fmt.Errorf("%s model: %s: the model does not take packed batches (Info.Packed is false): %w", info.Arch, what, api.ErrUnsupported)
	}
	return nil
}

// trainer returns the model's stepper, made on first use.
func (m *served) trainer() (api.TrainStepper, error) {
	if m.stepper == nil {
		st, err := train.Stepper(m.m)
		if err != nil {
			return nil, err
		}
		m.stepper = st
	}
	return m.stepper, nil
}

func (s *server) TrainStep(ctx context.Context, req *pb.TrainStepRequest) (*pb.TrainStepResponse, error) {
	if len(req.Batches)%2 != 0 {
		return nil, fmt.Errorf("train step: %d id streams, want inputs and targets per batch: %w", len(req.Batches), api.ErrCorrupt)
	}
	r := api.TrainStepRequest{LR: req.Lr, ClipNorm: req.ClipNorm}
	if err := json.Unmarshal(req.OptimizerJson, &r.Optimizer); err != nil {
		return nil, fmt.Errorf("train step: optimizer: %v: %w", err, api.ErrCorrupt)
	}
	if len(req.Layouts) != 0 && 2*len(req.Layouts) != len(req.Batches) {
		return nil, fmt.Errorf("train step: %d layouts for %d batches: %w", len(req.Layouts), len(req.Batches)/2, api.ErrCorrupt)
	}
	laidOut := false
	for i := 0; i < len(req.Batches); i += 2 {
		var layout *pb.BatchLayout
		if len(req.Layouts) > 0 {
			layout = req.Layouts[i/2]
		}
		b, err := wire.DecodeBatch(req.Batches[i], req.Batches[i+1], layout)
		if err != nil {
			return nil, fmt.Errorf("train step: batch %d: %w", i/2, err)
		}
		laidOut = laidOut || len(layout.GetLengths()) > 0 || len(layout.GetStarts()) > 0
		r.Batches = append(r.Batches, b)
	}
	m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if laidOut {
		if err := m.packed("train step of rows of different lengths or with document starts"); err != nil {
			return nil, err
		}
	}
	st, err := m.trainer()
	if err != nil {
		return nil, err
	}
	res, err := st.TrainStep(ctx, r)
	if err != nil {
		return nil, err
	}
	return &pb.TrainStepResponse{Loss: res.Loss, GradNorm: res.GradNorm}, nil
}

func (s *server) OptimizerState(ctx context.Context, req *pb.ModelRef) (*pb.OptimizerStateMessage, error) {
	m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	st, err := m.trainer()
	if err != nil {
		return nil, err
	}
	state, err := st.OptimizerState(ctx)
	if err != nil {
		return nil, err
	}
	enc, err := wire.EncodeTensors(state.Tensors)
	if err != nil {
		return nil, err
	}
	return &pb.OptimizerStateMessage{Model: req.Model, Steps: state.Steps, Arrow: enc}, nil
}

func (s *server) SetOptimizerState(ctx context.Context, req *pb.OptimizerStateMessage) (*pb.Empty, error) {
	var cfg api.OptimizerConfig
	if err := json.Unmarshal(req.OptimizerJson, &cfg); err != nil {
		return nil, fmt.Errorf("optimizer: %v: %w", err, api.ErrCorrupt)
	}
	tensors, err := wire.DecodeTensors(req.Arrow)
	if err != nil {
		return nil, err
	}
	m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	st, err := m.trainer()
	if err != nil {
		return nil, err
	}
	return &pb.Empty{}, st.SetOptimizerState(ctx, cfg, api.OptimizerState{Steps: req.Steps, Tensors: tensors})
}

func (s *server) Save(ctx context.Context, req *pb.SaveRequest) (*pb.Empty, error) {
	dt, err := api.ParseDType(req.Dtype)
	if err != nil {
		return nil, err
	}
	m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	return &pb.Empty{}, checkpoint.SaveModelAs(ctx, req.Dir, m.m, dt)
}

func (s *server) Unload(_ context.Context, req *pb.ModelRef) (*pb.Empty, error) {
	s.mu.Lock()
	m, ok := s.models[req.Model]
	delete(s.models, req.Model)
	s.mu.Unlock()
	if !ok {
		return &pb.Empty{}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	if m.result != nil {
		errs = append(errs, m.result.Close())
	}
	for _, st := range m.states {
		errs = append(errs, st.Close())
	}
	errs = append(errs, m.m.Close())
	return &pb.Empty{}, errors.Join(errs...)
}

// weightsName is the wire's spelling of a weight storage: "" for Invalid.
func weightsName(d api.DType) string {
	if d == api.Invalid {
		return ""
	}
	return d.String()
}
