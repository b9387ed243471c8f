package sdk

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/densessm/densessm/api"
	"github.com/densessm/densessm/plugins/internal/wire"
	pb "github.com/densessm/densessm/plugins/proto"
	"github.com/densessm/densessm/train"
)

// unpackedArch is Mamba under another name, whose models do not take
// packed batches (Info.Packed false).
type unpackedArch struct{ api.Architecture }

func (unpackedArch) Name() string { return "mamba-unpacked" }

func (a unpackedArch) New(ctx context.Context, cfg api.Config, o api.BuildOptions) (api.Model, error) {
	m, err := a.Architecture.New(ctx, cfg, o)
	return unpackedModel{m.(api.Trainable)}, err
}

type unpackedModel struct{ api.Trainable }

func (m unpackedModel) Info() api.Info {
	info := m.Trainable.Info()
	info.Packed = false
	return info
}

func init() {
	base, err := api.LookupArchitecture("mamba")
	if err != nil {
		panic(err)
	}
	api.RegisterArchitecture(unpackedArch{base})
}

// forward runs a Forward as the host does, without shared memory, and
// returns the logits or the error's kind.
func forward(ctx context.Context, c pb.RuntimeClient, req *pb.ForwardRequest) (api.HostTensor, string, error) {
	var md metadata.MD
	stream, err := c.Forward(ctx, req, grpc.Trailer(&md))
	if err != nil {
		return api.HostTensor{}, "", err
	}
	h, err := wire.ReadTensorStream(func() ([]byte, error) {
		msg, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return msg.Data, nil
	}, 1<<30)
	if err != nil && err != io.EOF {
		return api.HostTensor{}, first(md.Get(wire.ErrorTrailer)), err
	}
	return h, "", err
}

// TestPackedRequests: ModelInfo.packed is the model's Info.Packed; a
// Forward of padded ids with their lengths, and a train step with a layout,
// reach a packed model as sequences of different lengths and document
// starts; a model that is not packed refuses them ("unsupported"); and
// lengths or starts that do not fit the ids are refused before anything is
// allocated for them ("corrupt", "shape").
func TestPackedRequests(t *testing.T) {
	c := serve(t)
	ctx := t.Context()
	cfg := []byte(`{"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "state_size": 8}`)
	models := map[string]uint64{}
	for _, arch := range []string{"mamba", "mamba-unpacked"} {
		info, err := c.Build(ctx, &pb.BuildRequest{Arch: arch, Build: &pb.BuildOptions{Threads: 1, Seed: 3}, ConfigJson: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if want := arch == "mamba"; info.Packed != want {
			t.Errorf("%s: ModelInfo.packed %v, want %v", arch, info.Packed, want)
		}
		models[arch] = info.Model
	}
	ragged := [][]int32{{1, 2, 3}, {4}, {5, 6}}
	enc, lengths, err := wire.EncodeRagged(ragged)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := forward(ctx, c, &pb.ForwardRequest{Model: models["mamba"], Ids: enc, Lengths: lengths})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Shape.Equal(api.Shape{3, 3, 64}) {
		t.Fatalf("logits %v of sequences of 3, 1 and 2 tokens, want [3 3 64]", h.Shape)
	}
	logits, _ := wire.Float32s(h.Data)
	for i, v := range logits[(3+1)*64 : (3+3)*64] { // the second sequence's padding
		if v != 0 {
			t.Fatalf("padding logit %d of the second sequence is %g", i, v)
		}
	}
	if _, kind, err := forward(ctx, c, &pb.ForwardRequest{Model: models["mamba-unpacked"], Ids: enc, Lengths: lengths}); kind != "unsupported" {
		t.Errorf("ragged ids to a model that is not packed: %q (%v), want unsupported", kind, err)
	}
	for _, bad := range [][]int64{{3, 1}, {3, 0, 2}, {3, 4, 2}, {2, 1, 2}} {
		if _, kind, err := forward(ctx, c, &pb.ForwardRequest{Model: models["mamba"], Ids: enc, Lengths: bad}); kind != "corrupt" {
			t.Errorf("lengths %v for ids [3,3]: %q (%v), want corrupt", bad, kind, err)
		}
	}

	opt, err := json.Marshal(train.DefaultOptimizer())
	if err != nil {
		t.Fatal(err)
	}
	trainStep := func(model uint64, layouts []*pb.BatchLayout, batches ...api.Batch) (string, error) {
		req := &pb.TrainStepRequest{Model: model, OptimizerJson: opt, Lr: 1e-3, Layouts: layouts}
		for _, b := range batches {
			in, tg, _, err := wire.EncodeBatch(b)
			if err != nil {
				t.Fatal(err)
			}
			req.Batches = append(req.Batches, in, tg)
		}
		var md metadata.MD
		_, err := c.TrainStep(ctx, req, grpc.Trailer(&md))
		return first(md.Get(wire.ErrorTrailer)), err
	}
	packed := api.Batch{Inputs: [][]int32{{1, 2, 3, 4}, {5, 6}}, Targets: [][]int32{{2, 3, 4, 5}, {6, 7}}, Starts: [][]int{{2}, nil}}
	_, _, layout, err := wire.EncodeBatch(packed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trainStep(models["mamba"], []*pb.BatchLayout{layout}, packed); err != nil {
		t.Fatalf("a packed train step: %v", err)
	}
	if kind, err := trainStep(models["mamba-unpacked"], []*pb.BatchLayout{layout}, packed); kind != "unsupported" {
		t.Errorf("a packed train step of a model that is not packed: %q (%v), want unsupported", kind, err)
	}
	pos := func(ps ...int64) *pb.Positions { return &pb.Positions{Positions: ps} }
	for _, c := range []struct {
		layouts []*pb.BatchLayout
		want    string
	}{
		{[]*pb.BatchLayout{layout, layout}, "corrupt"},                                            // two layouts for one batch
		{[]*pb.BatchLayout{{Lengths: []int64{4}}}, "corrupt"},                                     // a length for one row of two
		{[]*pb.BatchLayout{{Lengths: []int64{4, 5}}}, "corrupt"},                                  // beyond the row
		{[]*pb.BatchLayout{{Lengths: []int64{4, 2}, Starts: []*pb.Positions{pos(2)}}}, "corrupt"}, // starts of one row
		{[]*pb.BatchLayout{{Lengths: []int64{4, 2}, Starts: []*pb.Positions{pos(2), pos(2)}}}, "shape"},
		{[]*pb.BatchLayout{{Lengths: []int64{4, 2}, Starts: []*pb.Positions{pos(3, 2), nil}}}, "shape"},
		{[]*pb.BatchLayout{{Lengths: []int64{4, 2}, Starts: []*pb.Positions{pos(1, 2, 3, 4, 5, 6), nil}}}, "shape"},
	} {
		if kind, err := trainStep(models["mamba"], c.layouts, packed); kind != c.want {
			t.Errorf("layouts %v: %q (%v), want %s", c.layouts, kind, err, c.want)
		}
	}
}

// prefill runs a Prefill as the host does, without shared memory, and
// returns the logits, the state's length or the error's kind.
func prefill(ctx context.Context, c pb.RuntimeClient, req *pb.PrefillRequest) (api.HostTensor, int64, string, error) {
	var md metadata.MD
	stream, err := c.Prefill(ctx, req, grpc.Trailer(&md))
	if err != nil {
		return api.HostTensor{}, 0, "", err
	}
	var n int64
	h, err := wire.ReadTensorStream(func() ([]byte, error) {
		msg, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		n = msg.Len
		return msg.Data, nil
	}, 1<<30)
	if err != nil && err != io.EOF {
		return api.HostTensor{}, 0, first(md.Get(wire.ErrorTrailer)), err
	}
	return h, n, "", err
}

// TestRaggedPrefillRequests: a Prefill of padded ids with their lengths
// reaches a packed model as sequences of different lengths, each of which
// continues its own state (its snapshot's header counts each one's
// tokens, and a LoadState of such a header sets them); a model that is not
// packed refuses them ("unsupported"), as does a Prefill of their last
// logits ("shape"), and lengths that do not fit the ids, or a header's
// lens that do not fit its counts, are refused ("corrupt"), leaving the
// state as it was.
func TestRaggedPrefillRequests(t *testing.T) {
	c := serve(t)
	ctx := t.Context()
	model := build(t, c, "mamba")
	unpacked := build(t, c, "mamba-unpacked")
	ragged := [][]int32{{1, 2, 3}, {4}, {5, 6}}
	enc, lengths, err := wire.EncodeRagged(ragged)
	if err != nil {
		t.Fatal(err)
	}
	s := newState(t, c, model, 3)
	h, n, _, err := prefill(ctx, c, &pb.PrefillRequest{Model: model, State: s, Ids: enc, Lengths: lengths})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Shape.Equal(api.Shape{3, 3, 64}) || n != 3 {
		t.Fatalf("logits %v, state at %d tokens, after a prefill of sequences of 3, 1 and 2 tokens; want [3 3 64] and 3", h.Shape, n)
	}
	logits, _ := wire.Float32s(h.Data)
	for i, v := range logits[(3+1)*64 : (3+3)*64] { // the second sequence's padding
		if v != 0 {
			t.Fatalf("padding logit %d of the second sequence is %g", i, v)
		}
	}
	header := func(state uint64) *pb.StateHeader {
		t.Helper()
		h, _, _, err := saveState(ctx, c, model, state)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := header(s); h.Tokens != 3 || !slices.Equal(h.Lens, []int64{3, 1, 2}) {
		t.Fatalf("the state's header after a prefill of sequences of 3, 1 and 2 tokens: %v", h)
	}

	// Refusals leave the state as it was.
	us := newState(t, c, unpacked, 3)
	if _, _, kind, err := prefill(ctx, c, &pb.PrefillRequest{Model: unpacked, State: us, Ids: enc, Lengths: lengths}); kind != "unsupported" {
		t.Errorf("ragged ids to a model that is not packed: %q (%v), want unsupported", kind, err)
	}
	if _, _, kind, err := prefill(ctx, c, &pb.PrefillRequest{Model: model, State: s, Ids: enc, Lengths: lengths, Last: true}); kind != "shape" {
		t.Errorf("the last logits of ragged ids: %q (%v), want shape", kind, err)
	}
	for _, bad := range [][]int64{{3, 1}, {3, 0, 2}, {3, 4, 2}, {2, 1, 2}, {3, 1, 2, 1}, {-1, 3, 3}} {
		if _, _, kind, err := prefill(ctx, c, &pb.PrefillRequest{Model: model, State: s, Ids: enc, Lengths: bad}); kind != "corrupt" {
			t.Errorf("lengths %v for ids [3,3]: %q (%v), want corrupt", bad, kind, err)
		}
	}
	if h := header(s); h.Tokens != 3 || !slices.Equal(h.Lens, []int64{3, 1, 2}) {
		t.Fatalf("the state's header after refused prefills: %v", h)
	}

	// A step adds one to each; the header goes into another state whole.
	if _, err := c.Step(ctx, &pb.StepRequest{Model: model, State: s, Ids: []int32{7, 8, 9}}); err != nil {
		t.Fatal(err)
	}
	saved, ts, _, err := saveState(ctx, c, model, s)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Tokens != 4 || !slices.Equal(saved.Lens, []int64{4, 2, 3}) {
		t.Fatalf("the state's header after a step: %v", saved)
	}
	d := newState(t, c, model, 3)
	into := proto.Clone(saved).(*pb.StateHeader)
	into.Model, into.State = model, d
	if kind, err := loadState(ctx, c, into, ts); err != nil {
		t.Fatalf("load state: %q %v", kind, err)
	}
	if h := header(d); h.Tokens != 4 || !slices.Equal(h.Lens, []int64{4, 2, 3}) {
		t.Fatalf("a state loaded from a header at 4, 2 and 3 tokens: %v", h)
	}
	for _, lens := range [][]int64{{4, 2}, {4, 2, 3, 1}, {3, 2, 3}, {5, 2, 4}, {4, -2, 3}} {
		bad := proto.Clone(into).(*pb.StateHeader)
		bad.Lens = lens
		if kind, err := loadState(ctx, c, bad, ts); kind != "corrupt" {
			t.Errorf("a header of 3 sequences at 4 tokens with lens %v: %q (%v), want corrupt", lens, kind, err)
		}
	}
	if h := header(d); h.Tokens != 4 || !slices.Equal(h.Lens, []int64{4, 2, 3}) {
		t.Fatalf("the state after refused loads: %v", h)
	}
	if _, err := c.ResetState(ctx, &pb.StateRef{Model: model, State: d}); err != nil {
		t.Fatal(err)
	}
	if h := header(d); h.Tokens != 0 || len(h.Lens) != 0 {
		t.Fatalf("a state after Reset: %v", h)
	}
}
