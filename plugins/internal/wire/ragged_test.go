package wire

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/densessm/densessm/api"
	pb "github.com/densessm/densessm/plugins/proto"
)

func TestRaggedRoundTrip(t *testing.T) {
	for _, ids := range [][][]int32{
		{{1, 2, 3}, {4, 5, 6}},        // one length: no lengths
		{{1, 2, 3}, {4}, {5, 6}},      // ragged
		{{7}, {8, 9, 10, 11}},         // the longest last
		{{-1, 1 << 30}, {2147483647}}, // any int32
	} {
		enc, lengths, err := EncodeRagged(ids)
		if err != nil {
			t.Fatal(err)
		}
		if (lengths != nil) != api.Ragged(ids) {
			t.Errorf("%v: lengths %v", ids, lengths)
		}
		got, err := DecodeRagged(enc, lengths)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, ids, slices.Equal) {
			t.Errorf("decoded %v, want %v", got, ids)
		}
		for _, row := range got {
			if cap(row) != len(row) {
				t.Errorf("a decoded row of %d tokens has capacity %d: appending to it would write into the next", len(row), cap(row))
			}
		}
	}
	if _, _, err := EncodeRagged([][]int32{{1}, {}}); !errors.Is(err, api.ErrShape) {
		t.Errorf("an empty sequence among others: %v, want api.ErrShape", err)
	}
}

func TestRaggedLengthsChecked(t *testing.T) {
	enc, err := EncodeIDs([][]int32{{1, 2, 3}, {4, 5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	for _, lengths := range [][]int64{{3}, {3, 2, 1}, {0, 3}, {3, 4}, {-1, 3}, {2, 2}, {1 << 40, 3}} {
		if _, err := DecodeRagged(enc, lengths); !errors.Is(err, api.ErrCorrupt) {
			t.Errorf("lengths %v for ids [2,3]: %v, want api.ErrCorrupt", lengths, err)
		}
	}
}

func TestBatchRoundTrip(t *testing.T) {
	for _, b := range []api.Batch{
		{Inputs: [][]int32{{1, 2}, {3, 4}}, Targets: [][]int32{{2, 9}, {4, 9}}},
		{Inputs: [][]int32{{1, 2}, {3, 4}}, Targets: [][]int32{{2, 9}, {4, 9}}, Starts: [][]int{nil, nil}},
		{Inputs: [][]int32{{1, 2, 3, 4}, {5}}, Targets: [][]int32{{2, 3, 4, -100}, {6}}},
		{Inputs: [][]int32{{1, 2, 3, 4}, {5, 6, 7, 8}}, Targets: [][]int32{{2, 3, 4, 5}, {6, 7, 8, 9}}, Starts: [][]int{{1, 3}, nil}},
		{Inputs: [][]int32{{1, 2, 3, 4, 5}, {5, 6, 7}}, Targets: [][]int32{{2, 3, 4, 5, 6}, {6, 7, 8}}, Starts: [][]int{{2}, {1, 2}}},
	} {
		in, tg, layout, err := EncodeBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := b.Layout()
		if (layout == nil) != l.Plain() {
			t.Errorf("%v: layout %v for a batch plain=%v", b, layout, l.Plain())
		}
		// The layout crosses as protobuf.
		raw, err := proto.Marshal(layout)
		if err != nil {
			t.Fatal(err)
		}
		var back pb.BatchLayout
		if err := proto.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeBatch(in, tg, &back)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got.Inputs, b.Inputs, slices.Equal) || !slices.EqualFunc(got.Targets, b.Targets, slices.Equal) {
			t.Errorf("decoded %v → %v, want %v → %v", got.Inputs, got.Targets, b.Inputs, b.Targets)
		}
		if !l.Plain() && !slices.EqualFunc(nonNil(got.Starts, len(b.Inputs)), nonNil(b.Starts, len(b.Inputs)), slices.Equal) {
			t.Errorf("starts %v, want %v", got.Starts, b.Starts)
		}
	}
	// What api.Batch.Layout refuses is refused before anything is encoded.
	for _, b := range []api.Batch{
		{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1}}},
		{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1, 2}}, Starts: [][]int{{0}}},
		{Inputs: [][]int32{{1, 2}}, Targets: [][]int32{{1, 2}}, Starts: [][]int{{1}, {1}}},
	} {
		if _, _, _, err := EncodeBatch(b); !errors.Is(err, api.ErrShape) {
			t.Errorf("%v: %v, want api.ErrShape", b, err)
		}
	}
}

// nonNil is starts with a nil list for each row when starts is nil.
func nonNil(starts [][]int, rows int) [][]int {
	if starts == nil {
		return make([][]int, rows)
	}
	out := make([][]int, rows)
	for i, s := range starts {
		if len(s) > 0 {
			out[i] = s
		}
	}
	return out
}

func TestBatchLayoutChecked(t *testing.T) {
	in, _ := EncodeIDs([][]int32{{1, 2, 3}, {4, 5, 6}})
	tg, _ := EncodeIDs([][]int32{{1, 2, 3}, {4, 5, 6}})
	short, _ := EncodeIDs([][]int32{{1, 2}, {4, 5}})
	if _, err := DecodeBatch(in, short, nil); !errors.Is(err, api.ErrCorrupt) {
		t.Errorf("targets of another shape: %v, want api.ErrCorrupt", err)
	}
	pos := func(ps ...int64) *pb.Positions { return &pb.Positions{Positions: ps} }
	for _, c := range []struct {
		layout *pb.BatchLayout
		want   error
	}{
		{&pb.BatchLayout{Lengths: []int64{3}}, api.ErrCorrupt},
		{&pb.BatchLayout{Lengths: []int64{0, 3}}, api.ErrCorrupt},
		{&pb.BatchLayout{Lengths: []int64{2, 2}}, api.ErrCorrupt},
		{&pb.BatchLayout{Lengths: []int64{3, 9}}, api.ErrCorrupt},
		{&pb.BatchLayout{Starts: []*pb.Positions{pos(1)}}, api.ErrCorrupt},
		{&pb.BatchLayout{Starts: []*pb.Positions{pos(1), pos(1), pos(1)}}, api.ErrCorrupt},
		{&pb.BatchLayout{Starts: []*pb.Positions{pos(0), nil}}, api.ErrShape},
		{&pb.BatchLayout{Starts: []*pb.Positions{pos(3), nil}}, api.ErrShape},
		{&pb.BatchLayout{Starts: []*pb.Positions{pos(2, 1), nil}}, api.ErrShape},
		{&pb.BatchLayout{Starts: []*pb.Positions{pos(1, 1), nil}}, api.ErrShape},
		{&pb.BatchLayout{Starts: []*pb.Positions{pos(1, 2, 3, 4, 5), nil}}, api.ErrShape},
		{&pb.BatchLayout{Starts: []*pb.Positions{pos(-1 << 62), nil}}, api.ErrShape},
		{&pb.BatchLayout{Lengths: []int64{3, 1}, Starts: []*pb.Positions{nil, pos(1)}}, api.ErrShape},
	} {
		if _, err := DecodeBatch(in, tg, c.layout); !errors.Is(err, c.want) {
			t.Errorf("layout %v: %v, want %v", c.layout, err, c.want)
		}
	}
}

func TestDecodeIDsRefusesEmptyBatches(t *testing.T) {
	for _, shape := range []api.Shape{{0, 3}, {maxEmptyRows + 1, 0}} {
		enc, err := EncodeTensor(api.HostTensor{Name: "ids", DType: api.I32, Shape: shape, Data: nil})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeIDs(enc); !errors.Is(err, api.ErrCorrupt) {
			t.Errorf("ids %v: %v, want api.ErrCorrupt", shape, err)
		}
	}
	enc, _ := EncodeIDs([][]int32{{}, {}})
	if ids, err := DecodeIDs(enc); err != nil || len(ids) != 2 {
		t.Errorf("two empty sequences: %v, %v", ids, err)
	}
}

// FuzzDecodeBatch: no inputs, targets and layout (protobuf) panic or make
// a batch whose layout api refuses; a ragged id batch decodes as its
// lengths say.
func FuzzDecodeBatch(f *testing.F) {
	in, tg, layout, _ := EncodeBatch(api.Batch{Inputs: [][]int32{{1, 2, 3, 4}, {5}}, Targets: [][]int32{{2, 3, 4, 5}, {6}}, Starts: [][]int{{2}, nil}})
	raw, _ := proto.Marshal(layout)
	f.Add(in, tg, raw)
	plain, _ := EncodeIDs([][]int32{{1, 2}})
	f.Add(plain, plain, []byte(nil))
	f.Fuzz(func(t *testing.T, in, tg, raw []byte) {
		var layout pb.BatchLayout
		if proto.Unmarshal(raw, &layout) != nil {
			return
		}
		kind := func(err error) {
			if !errors.Is(err, api.ErrCorrupt) && !errors.Is(err, api.ErrShape) && !errors.Is(err, api.ErrUnsupported) && !errors.Is(err, api.ErrDType) {
				t.Fatalf("error of no kind: %v", err)
			}
		}
		if ids, err := DecodeRagged(in, layout.Lengths); err != nil {
			kind(err)
		} else if len(layout.Lengths) > 0 {
			for i, row := range ids {
				if int64(len(row)) != layout.Lengths[i] {
					t.Fatalf("row %d of %d tokens, length %d", i, len(row), layout.Lengths[i])
				}
			}
		}
		b, err := DecodeBatch(in, tg, &layout)
		if err != nil {
			kind(err)
			return
		}
		if _, err := b.Layout(); err != nil {
			t.Fatalf("a decoded batch api refuses: %v", err)
		}
	})
}
