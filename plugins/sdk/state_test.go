package sdk

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/densessm/densessm/api"
	_ "github.com/densessm/densessm/architectures/mamba"
	"github.com/densessm/densessm/plugins/internal/wire"
	pb "github.com/densessm/densessm/plugins/proto"
)

// noSaverArch is Mamba under another name, whose models do not save
// their states (the wrapper has only api.Model's methods).
type noSaverArch struct{ api.Architecture }

func (noSaverArch) Name() string { return "mamba-nosaver" }

func (a noSaverArch) New(ctx context.Context, cfg api.Config, o api.BuildOptions) (api.Model, error) {
	m, err := a.Architecture.New(ctx, cfg, o)
	return struct{ api.Model }{m}, err
}

func init() {
	base, err := api.LookupArchitecture("mamba")
	if err != nil {
		panic(err)
	}
	api.RegisterArchitecture(noSaverArch{base})
}

// serve runs the service for mamba, mamba-nosaver and mamba-unpacked
// (packed_test.go) in this process (so that the race detector sees its
// handlers) and returns a client.
func serve(t *testing.T) pb.RuntimeClient {
	t.Helper()
	srv, err := NewServer(Plugin{Name: "test", Version: "0", Architectures: []string{"mamba", "mamba-nosaver", "mamba-unpacked"}})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGRPCServer(nil)
	pb.RegisterRuntimeServer(g, srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxMessage), grpc.MaxCallSendMsgSize(wire.MaxMessage)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewRuntimeClient(conn)
}

// build makes a tiny model of arch.
func build(t *testing.T, c pb.RuntimeClient, arch string) uint64 {
	t.Helper()
	info, err := c.Build(t.Context(), &pb.BuildRequest{Arch: arch, Build: &pb.BuildOptions{Threads: 1, Seed: 3},
		ConfigJson: []byte(`{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "state_size": 8}`)})
	if err != nil {
		t.Fatal(err)
	}
	if want := arch == "mamba"; info.StateSaver != want {
		t.Errorf("%s: ModelInfo.state_saver %v, want %v", arch, info.StateSaver, want)
	}
	return info.Model
}

func newState(t *testing.T, c pb.RuntimeClient, model uint64, batch int64) uint64 {
	t.Helper()
	ref, err := c.NewState(t.Context(), &pb.NewStateRequest{Model: model, Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	return ref.State
}

// saveState reads a state's contents as the host does.
func saveState(ctx context.Context, c pb.RuntimeClient, model, state uint64) (h *pb.StateHeader, ts []api.HostTensor, kind string, err error) {
	var md metadata.MD
	stream, err := c.SaveState(ctx, &pb.StateRef{Model: model, State: state}, grpc.Trailer(&md))
	if err != nil {
		return nil, nil, "", err
	}
	var r *wire.PieceReader
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, first(md.Get(wire.ErrorTrailer)), err
		}
		if msg.Header != nil {
			h = msg.Header
			if r, err = wire.NewPieceReader(h.Tensors); err != nil {
				return nil, nil, "", err
			}
		}
		if err := r.Add(msg.Pieces); err != nil {
			return nil, nil, "", err
		}
	}
	ts, err = r.Tensors()
	return h, ts, "", err
}

// loadState sends contents into a state as the host does and returns the
// error kind of a refusal.
func loadState(ctx context.Context, c pb.RuntimeClient, h *pb.StateHeader, ts []api.HostTensor) (string, error) {
	var md metadata.MD
	stream, err := c.LoadState(ctx, grpc.Trailer(&md))
	if err != nil {
		return "", err
	}
	err = wire.WritePieces(ts, func(ps []*pb.TensorPiece) error {
		msg := &pb.StateChunk{Header: h, Pieces: ps}
		h = nil
		return stream.Send(msg)
	})
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if _, err = stream.CloseAndRecv(); err != nil {
		return first(md.Get(wire.ErrorTrailer)), err
	}
	return "", nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// TestStateRequests: SaveState and LoadState move a state's contents
// between states of a model served in this process while other requests
// run on the same model (the race detector watches the locking), and
// answer with the error kinds the host maps back: a model that does not
// save its states ("unsupported"), a state that is not there
// ("not-found"), contents that do not fit ("shape"), a stream that is not
// one ("corrupt").
func TestStateRequests(t *testing.T) {
	c := serve(t)
	ctx := t.Context()
	model := build(t, c, "mamba")
	src, dst, busy := newState(t, c, model, 2), newState(t, c, model, 2), newState(t, c, model, 2)
	if _, err := c.Step(ctx, &pb.StepRequest{Model: model, State: src, Ids: []int32{1, 2}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { // steps and resets on another state of the model
		for i := range 40 {
			if _, err := c.Step(ctx, &pb.StepRequest{Model: model, State: busy, Ids: []int32{int32(i % 64), 5}}); err != nil {
				errs <- err
				return
			}
		}
		if _, err := c.ResetState(ctx, &pb.StateRef{Model: model, State: busy}); err != nil {
			errs <- err
		}
	})
	wg.Go(func() { // states made and freed
		for range 20 {
			ref, err := c.NewState(ctx, &pb.NewStateRequest{Model: model, Batch: 1})
			if err == nil {
				_, err = c.FreeState(ctx, ref)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			h, ts, _, err := saveState(ctx, c, model, src)
			if err == nil {
				h.Model, h.State = model, dst
				_, err = loadState(ctx, c, h, ts)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for range 3 { // the loaded state continues as the original
		a, err := c.Step(ctx, &pb.StepRequest{Model: model, State: src, Ids: []int32{7, 9}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Step(ctx, &pb.StepRequest{Model: model, State: dst, Ids: []int32{7, 9}})
		if err != nil {
			t.Fatal(err)
		}
		if string(a.Arrow) != string(b.Arrow) || a.Len != b.Len {
			t.Fatalf("the loaded state's logits (at %d tokens) differ from the original's (at %d)", b.Len, a.Len)
		}
	}

	h, ts, _, err := saveState(ctx, c, model, src)
	if err != nil {
		t.Fatal(err)
	}
	if h.Batch != 2 || h.Tokens != 4 || int(h.Tensors) != len(ts) || len(ts) != 4 {
		t.Fatalf("header %v with %d tensors, want 2 sequences at 4 tokens, 4 tensors", h, len(ts))
	}
	noSaver := build(t, c, "mamba-nosaver")
	other := newState(t, c, noSaver, 2)
	wide := newState(t, c, model, 3)
	header := func(model, state uint64, batch, n int64) *pb.StateHeader {
		return &pb.StateHeader{Model: model, State: state, Batch: batch, Tokens: 4, Tensors: n}
	}
	if _, _, kind, err := saveState(ctx, c, noSaver, other); kind != "unsupported" {
		t.Errorf("saving a state of a model without the capability: %q, %v", kind, err)
	}
	if _, _, kind, err := saveState(ctx, c, model, 99); kind != "not-found" {
		t.Errorf("saving a state that is not there: %q, %v", kind, err)
	}
	for _, tc := range []struct {
		what string
		h    *pb.StateHeader
		ts   []api.HostTensor
		kind string
	}{
		{"into a model without the capability", header(noSaver, other, 2, 4), ts, "unsupported"},
		{"into a state that is not there", header(model, 99, 2, 4), ts, "not-found"},
		{"into a state of another batch", header(model, wide, 2, 4), ts, "shape"},
		{"a tensor missing", header(model, dst, 2, 3), ts[1:], "shape"},
		{"fewer tensors than the header says", header(model, dst, 2, 5), ts, "corrupt"},
		{"more tensors than the header says", header(model, dst, 2, 3), ts, "corrupt"},
		{"no header", nil, ts, "corrupt"},
	} {
		if kind, err := loadState(ctx, c, tc.h, tc.ts); kind != tc.kind {
			t.Errorf("%s: kind %q (%v), want %q", tc.what, kind, err, tc.kind)
		}
	}
}
