package wire

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/densessm/densessm/api"
	pb "github.com/densessm/densessm/plugins/proto"
)

func TestStateHeaderRoundTrip(t *testing.T) {
	ts := []api.HostTensor{{Name: "a"}, {Name: "b"}}
	for _, c := range []struct {
		snap api.StateSnapshot
		lens []int64 // on the wire
	}{
		{api.StateSnapshot{Batch: 2, Tokens: 5, Tensors: ts}, nil},
		{api.StateSnapshot{Batch: 3, Tokens: 5, Lens: []int{5, 2, 0}, Tensors: ts}, []int64{5, 2, 0}},
		{api.StateSnapshot{Batch: 2, Tokens: 4, Lens: []int{4, 4}}, nil}, // the same: none
		{api.StateSnapshot{Batch: 1, Tokens: 0}, nil},
		{api.StateSnapshot{Batch: 0, Tokens: 0, Lens: []int{}}, nil}, // empty, not nil
	} {
		h, err := EncodeStateHeader(c.snap)
		if err != nil {
			t.Fatal(err)
		}
		if h.Batch != int64(c.snap.Batch) || h.Tokens != int64(c.snap.Tokens) || h.Tensors != int64(len(c.snap.Tensors)) || !slices.Equal(h.Lens, c.lens) {
			t.Errorf("%+v: header %v", c.snap, h)
		}
		b, err := proto.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var back pb.StateHeader
		if err := proto.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeStateHeader(&back)
		if err != nil {
			t.Fatal(err)
		}
		if got.Batch != c.snap.Batch || got.Tokens != c.snap.Tokens || !slices.Equal(got.SeqLens(), c.snap.SeqLens()) || (got.Lens == nil) != (c.lens == nil) {
			t.Errorf("%+v came back as %+v", c.snap, got)
		}
	}
}

func TestStateHeaderChecked(t *testing.T) {
	for _, snap := range []api.StateSnapshot{
		{Batch: 2, Tokens: -1},
		{Batch: -1, Tokens: 1},
		{Batch: 2, Tokens: 3, Lens: []int{3}},        // one for two sequences
		{Batch: 2, Tokens: 3, Lens: []int{2, 1}},     // none at tokens
		{Batch: 2, Tokens: 3, Lens: []int{4, 3}},     // beyond tokens
		{Batch: 2, Tokens: 3, Lens: []int{3, -1}},    // negative
		{Batch: 2, Tokens: 3, Lens: []int{3, 1, 2}},  // three for two
		{Batch: 1, Tokens: 1 << 40, Lens: []int{1}},  // far from tokens
		{Batch: 3, Tokens: 2, Lens: []int{2, 2, 99}}, // beyond, the largest not tokens
	} {
		if _, err := EncodeStateHeader(snap); !errors.Is(err, api.ErrCorrupt) {
			t.Errorf("encode %+v: %v, want api.ErrCorrupt", snap, err)
		}
	}
	for _, h := range []*pb.StateHeader{
		nil,
		{Batch: -1},
		{Batch: 2, Tokens: -1},
		{Batch: 2, Tokens: 3, Lens: []int64{3}},
		{Batch: 2, Tokens: 3, Lens: []int64{3, 1, 2}},
		{Batch: 2, Tokens: 3, Lens: []int64{2, 1}},
		{Batch: 2, Tokens: 3, Lens: []int64{3, 4}},
		{Batch: 2, Tokens: 3, Lens: []int64{3, -1}},
		{Batch: 2, Tokens: 3, Lens: []int64{3, 1 << 40}},
		{Batch: 1 << 40, Tokens: 3, Lens: []int64{3}}, // a huge batch: nothing allocated
	} {
		if _, err := DecodeStateHeader(h); !errors.Is(err, api.ErrCorrupt) {
			t.Errorf("decode %v: %v, want api.ErrCorrupt", h, err)
		}
	}
}
